// The console's deploy page for a new connector: the commands to run it, with its tokens filled in
// (docs/console.md "Deploying a connector"). They use only what docs/deploy.md documents: the
// connector's environment variables (`sallyport-connector --help`), the container image built by
// `npm run container` and its run flags, and the Debian package's config file and unit. The
// commands are pure text, so a unit test checks every name against the connector's own option
// table and config-file parser; the page puts them in <pre> through hono/html (escaped).
import { html } from "hono/html";
import { VERSION } from "../../../shared/version.ts";
import type { Fragment } from "./page.ts";

export interface DeployInput {
  /** The Controller's public URL (the issuer its tokens name). */
  controller: string;
  accessToken: string;
  refreshToken: string;
  /** The release whose binary, image and package the commands name. */
  version: string;
}

export interface DeployCommands {
  /** The binary, tokens in its environment (never on its command line, where `ps` shows them). */
  binary: string;
  podman: string;
  docker: string;
  /** Debian package and systemd unit: the config file it reads, then enabling the unit. */
  systemd: string;
  /** The KEY=VALUE lines of /etc/sallyport/connector.conf (inside `systemd`). */
  config: string;
}

/** A value as one shell word: bare when it is plainly safe, else single-quoted. */
export function shellWord(v: string): string {
  return /^[A-Za-z0-9_.,:/@%+=-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

const STATE_VOLUME = "/srv/sallyport-connector";

export function deployCommands(i: DeployInput): DeployCommands {
  const env = {
    SALLYPORT_CONTROLLER: i.controller,
    SALLYPORT_ACCESS_TOKEN: i.accessToken,
    SALLYPORT_REFRESH_TOKEN: i.refreshToken,
  };
  const assign = Object.entries(env).map(([k, v]) => `${k}=${shellWord(v)}`);
  const binary = `${assign.join(" \\\n")} \\\n  sallyport-connector`;
  const container = (engine: "podman" | "docker") =>
    [
      `sudo install -d -o 65532 -g 65532 -m 0700 ${STATE_VOLUME}`,
      // `-e NAME` without a value takes it from this shell: the tokens stay off the engine's
      // command line (and out of `ps`).
      `export ${assign.slice(1).join(" ")}`,
      `${engine} run -d --name sallyport-connector --restart=always \\`,
      "  --read-only --cap-drop=all --security-opt=no-new-privileges \\",
      `  -v ${STATE_VOLUME}:/var/lib/sallyport-connector \\`,
      `  -e SALLYPORT_CONTROLLER=${shellWord(i.controller)} -e SALLYPORT_ACCESS_TOKEN -e SALLYPORT_REFRESH_TOKEN \\`,
      `  sallyport-connector:${i.version}`,
    ].join("\n");
  // Bare values: the config file takes KEY=VALUE without shell quoting (connector/config-file.ts).
  const config = Object.entries(env)
    .map(([k, v]) => `${k}=${v}`)
    .join("\n");
  const systemd = [
    `sudo apt install ./sallyport-connector_${i.version}_amd64.deb`,
    "sudo tee /etc/sallyport/connector.conf >/dev/null <<'EOF'",
    config,
    "EOF",
    "sudo chmod 0600 /etc/sallyport/connector.conf",
    "sudo systemctl enable --now sallyport-connector",
    'journalctl -u sallyport-connector -f    # "attached to relay"',
  ].join("\n");
  return {
    binary,
    podman: container("podman"),
    docker: `# the image from \`npm run container\`, moved to docker once:\n# podman save sallyport-connector:${i.version} | docker load\n${container("docker")}`,
    systemd,
    config,
  };
}

/** Where the page is shown: the Controller's public URL (what connectors are given) and the console's base. */
export interface ShowEnv {
  controller: string;
  base: string;
}

/** POST /connectors's answer: the connector and its tokens, shown only in this page. */
export interface CreatedConnector {
  connector: { id: string; name: string; state: string };
  tokens: { access_token: string; refresh_token: string };
}

/** The deploy page of a connector just created; its state badge is live (console.js). */
export function deployPage(r: CreatedConnector, env: ShowEnv): Fragment {
  const cmd = deployCommands({
    controller: env.controller,
    accessToken: r.tokens.access_token,
    refreshToken: r.tokens.refresh_token,
    version: VERSION,
  });
  const id = r.connector.id;
  return html`<p class="notice" id="deploy-status">Connector <strong id="created-name">${r.connector.name}</strong> is
<span class="state state-${r.connector.state}" data-connector="${id}" id="deploy-state">${r.connector.state}</span>.
This page turns to <strong>online</strong> by itself the moment the connector attaches.</p>
<p>Run one of these on a host inside the private network; it needs outbound HTTPS only. The tokens are
shown <strong>only now</strong>: after its first start the connector keeps rotated ones in its state
directory. Deploy two connectors per remote network: clients fail over between them.
<a href="${env.base}/connectors/${id}">Connector details</a>.</p>
<h2>Binary</h2>
<p class="muted">The <code>sallyport-connector</code> binary of release ${VERSION} (or <code>npm run build</code>:
<code>dist/sallyport-connector</code>). State: <code>~/.local/state/sallyport-connector</code>
(<code>--state-dir</code>). Add <code>--direct-listen HOST:PORT</code> for the direct path.</p>
<pre class="secret" id="deploy-binary">${cmd.binary}</pre>
<h2>Container: podman</h2>
<p class="muted">The image from <code>npm run container</code>, read-only and unprivileged, its state on the host.</p>
<pre class="secret" id="deploy-podman">${cmd.podman}</pre>
<h2>Container: docker</h2>
<pre class="secret" id="deploy-docker">${cmd.docker}</pre>
<h2>systemd (Debian package)</h2>
<p class="muted">The package installs the binary and the hardened unit; the unit reads its tokens from
<code>/etc/sallyport/connector.conf</code> (root only).</p>
<pre class="secret" id="deploy-systemd">${cmd.systemd}</pre>`;
}
