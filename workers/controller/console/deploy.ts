// The commands the console's deploy page shows for a new connector, with its tokens filled in
// (docs/console.md "Deploying a connector"). They use only what docs/deploy.md documents: the
// connector's environment variables (`sallyport-connector --help`), the container image built by
// `npm run container` and its run flags, and the Debian package's config file and unit. Pure, so a
// unit test checks every name against the connector's own option table and config-file parser.

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
