// The deploy page's commands name only what the connector and its packaging really take: every
// environment variable is one of the connector's options, the config block is what its config-file
// parser reads back, and tokens with shell-special characters stay one word.
import { describe, expect, test } from "bun:test";
import { CONNECTOR_OPTIONS } from "../../../connector/config.ts";
import { parseConfigFile } from "../../../connector/config-file.ts";
import { deployCommands, shellWord } from "./deploy.ts";

const input = {
  controller: "https://zt.example.org",
  accessToken: "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJjbl8xIn0.c2lnbmF0dXJl",
  refreshToken: "spr_nw1.cn1.c2VjcmV0",
  version: "0.1.0",
};
const knownEnv = new Set(CONNECTOR_OPTIONS.flatMap((o) => (o.env ? [o.env] : [])));

describe("deploy commands", () => {
  const cmd = deployCommands(input);

  test("every SALLYPORT_ name in every command is an option of the connector", () => {
    for (const text of [cmd.binary, cmd.podman, cmd.docker, cmd.systemd]) {
      const names = [...text.matchAll(/\b(SALLYPORT_[A-Z_]+)/g)].map((m) => m[1] ?? "");
      expect(names.length).toBeGreaterThanOrEqual(3);
      for (const n of names) expect(knownEnv.has(n)).toBe(true);
    }
  });

  test("the binary gets its tokens in the environment, not on its command line", () => {
    const words = cmd.binary.replace(/\\\n/g, " ").trim().split(/\s+/);
    expect(words.at(-1)).toBe("sallyport-connector");
    expect(Object.fromEntries(words.slice(0, -1).map((w) => w.split(/=(.*)/s).slice(0, 2)))).toEqual({
      SALLYPORT_CONTROLLER: input.controller,
      SALLYPORT_ACCESS_TOKEN: input.accessToken,
      SALLYPORT_REFRESH_TOKEN: input.refreshToken,
    });
  });

  test("the systemd config block is what the connector's config-file parser reads back", () => {
    expect(cmd.systemd).toContain(`<<'EOF'\n${cmd.config}\nEOF`);
    expect(parseConfigFile(cmd.config, knownEnv)).toEqual({
      SALLYPORT_CONTROLLER: input.controller,
      SALLYPORT_ACCESS_TOKEN: input.accessToken,
      SALLYPORT_REFRESH_TOKEN: input.refreshToken,
    });
    expect(cmd.systemd).toContain("sudo chmod 0600 /etc/sallyport/connector.conf");
    expect(cmd.systemd).toContain("sudo systemctl enable --now sallyport-connector");
    expect(cmd.systemd).toContain("sallyport-connector_0.1.0_amd64.deb");
  });

  test("containers: read-only, unprivileged, state on the host, tokens passed by name only", () => {
    for (const [engine, text] of [
      ["podman", cmd.podman],
      ["docker", cmd.docker],
    ] as const) {
      expect(text).toContain(`${engine} run -d --name sallyport-connector --restart=always`);
      expect(text).toContain("--read-only --cap-drop=all --security-opt=no-new-privileges");
      expect(text).toContain("-v /srv/sallyport-connector:/var/lib/sallyport-connector");
      expect(text).toContain("-e SALLYPORT_ACCESS_TOKEN -e SALLYPORT_REFRESH_TOKEN");
      expect(text).toContain("sallyport-connector:0.1.0");
      // The tokens are exported in the shell, never on the engine's command line.
      const runLine = text.slice(text.indexOf(`${engine} run`));
      expect(runLine).not.toContain(input.accessToken);
      expect(text).toContain(`export SALLYPORT_ACCESS_TOKEN=${input.accessToken}`);
    }
    expect(cmd.docker).toContain("podman save sallyport-connector:0.1.0 | docker load");
  });

  test("a value with shell-special characters stays one quoted word", () => {
    expect(shellWord("https://a.example")).toBe("https://a.example");
    expect(shellWord("a b")).toBe("'a b'");
    expect(shellWord("it's $HOME")).toBe(`'it'\\''s $HOME'`);
    expect(deployCommands({ ...input, controller: "http://x/$(id)" }).binary).toContain(
      "SALLYPORT_CONTROLLER='http://x/$(id)'",
    );
  });
});
