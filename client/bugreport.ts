// `sallyport bugreport`: one archive to attach to a support ticket — versions, platform, the
// session (who and where, never a token), the running client's status and recent log lines,
// `sallyport doctor`'s walk, and the state directory's file names and modes (never contents).
// Everything written passes the log scrubber, so secret-shaped strings are replaced.
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { arch, platform, release, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { scrub } from "../bunlib/log.ts";
import { formatChecks, runDoctor } from "./doctor.ts";
import type { SessionState } from "./state.ts";

export interface BugreportDeps {
  version: string;
  stateDir: string;
  session: SessionState | undefined;
  daemon: (path: string) => Promise<unknown | undefined>;
}

export async function writeBugreport(
  deps: BugreportDeps,
  output: string,
): Promise<{ path: string; files: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), "sallyport-bugreport-"));
  const files: Record<string, string> = {};
  files["version.txt"] = [
    `sallyport ${deps.version}`,
    `bun ${Bun.version}`,
    `platform ${platform()} ${release()} ${arch()}`,
    `generated ${new Date().toISOString()}`,
  ].join("\n");
  const s = deps.session;
  files["session.json"] = JSON.stringify(
    s
      ? {
          controller: s.controller,
          network_id: s.network_id,
          principal: s.principal,
          device_id: s.device_id,
          expires_at: s.expires_at,
          service_key_file: s.service_key_file ? "(set)" : null,
        }
      : { signed_in: false },
    null,
    2,
  );
  const status = await deps.daemon("/status");
  files["status.json"] = JSON.stringify(status ?? { running: false }, null, 2);
  const logs = (await deps.daemon("/logs")) as { lines?: string[] } | undefined;
  files["client.log"] = logs?.lines?.join("\n") ?? "(the client is not running)";
  files["doctor.txt"] = formatChecks(await runDoctor({ session: s, daemon: deps.daemon }, undefined));
  let listing = "";
  try {
    for (const name of readdirSync(deps.stateDir)) {
      const st = statSync(join(deps.stateDir, name));
      listing += `${(st.mode & 0o777).toString(8).padStart(4, "0")} ${String(st.size).padStart(8)} ${name}\n`;
    }
  } catch (err) {
    listing = `cannot list ${deps.stateDir}: ${(err as Error).message}`;
  }
  files["state-dir.txt"] = listing;
  for (const [name, text] of Object.entries(files))
    writeFileSync(join(dir, name), `${scrub(text)}\n`, { mode: 0o600 });
  const path = resolve(output);
  const tar = Bun.spawnSync(["tar", "-czf", path, "-C", dir, ...Object.keys(files)], { stderr: "pipe" });
  rmSync(dir, { recursive: true, force: true });
  if (tar.exitCode !== 0) throw new Error(`tar failed: ${tar.stderr.toString().trim()}`);
  return { path, files: Object.keys(files) };
}
