// End to end: the ways to connect besides SOCKS5, with real programs on both ends. Real workerd
// (wrangler dev), the compiled connector and client binaries, curl through the HTTP proxy (plain
// forwarding and CONNECT) and for the PAC file, `sallyport forward` and `sallyport pipe` as real
// processes, and one `ssh -o ProxyCommand='sallyport pipe %h %p'` to a throwaway sshd.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CLIENT_BIN,
  type Proc,
  spawnLogged,
  startClient,
  startConnector,
} from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { sshdPath, startSshd } from "../../scripts/lib/sshd.ts";
import { type Edge, freePort, startEdge } from "../helpers/edge.ts";
import { startEcho, startHttp } from "../helpers/servers.ts";

let edge: Edge;
let connector: Proc;
let client: Proc & { socks: string };
let p: Provisioned;
let echo: { port: number; close: () => void };
let hello: { port: number; close: () => void };
let sshdPort: number;
const tmp = mkdtempSync(join(tmpdir(), "sallyport-e2e-modes-"));
const procs: Proc[] = [];

const haveSsh = Boolean(sshdPath() && Bun.which("ssh") && Bun.which("ssh-keygen"));

const restricted = (port: number) => ({
  tcp: { policy: "restricted", ports: [String(port)] },
  udp: { policy: "restricted", ports: [] },
  icmp: false,
});

beforeAll(async () => {
  edge = await startEdge();
  echo = await startEcho();
  hello = await startHttp("Hello from the private network");
  sshdPort = await freePort();
  p = await provisionNetwork(edge, [
    { name: "hello", address: "hello.demo.internal", alias: "hello", protocols: restricted(hello.port) },
    { name: "echo", address: "echo.demo.internal", protocols: restricted(echo.port) },
    { name: "ssh", address: "ssh.demo.internal", protocols: restricted(sshdPort) },
    { name: "apps", address: "*.apps.demo.internal" },
    { name: "lab", address: "10.77.0.0/16" },
  ]);
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: [
      "hello.demo.internal=127.0.0.1",
      "echo.demo.internal=127.0.0.1",
      "ssh.demo.internal=127.0.0.1",
    ],
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
  });
}, 120_000);

afterAll(async () => {
  for (const proc of procs) await proc.stop();
  await client?.stop();
  await connector?.stop("SIGINT");
  echo?.close();
  hello?.close();
  await edge?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

async function run(cmd: string[], stdin?: Uint8Array): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn(cmd, { stdin: stdin ? "pipe" : "ignore", stdout: "pipe", stderr: "pipe" });
  if (stdin && proc.stdin) {
    proc.stdin.write(stdin);
    await proc.stdin.end();
  }
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  return { code: proc.exitCode ?? -1, out, err };
}

const curl = (args: string[]) => run(["curl", "-sS", "--max-time", "20", ...args]);
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Sends bytes to a local port, half-closes, and returns everything that comes back. */
async function roundTrip(port: number, data: Uint8Array): Promise<Buffer> {
  const sock = net.connect(port, "127.0.0.1");
  const chunks: Buffer[] = [];
  sock.on("data", (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", () => resolve());
    sock.once("error", reject);
  });
  sock.end(data);
  await new Promise<void>((resolve, reject) => {
    sock.once("close", () => resolve());
    sock.once("error", reject);
  });
  return Buffer.concat(chunks);
}

describe("HTTP proxy on the SOCKS port", () => {
  test("curl -x forwards plain http:// to a Resource through the tunnel", async () => {
    const r = await curl(["-x", `http://${client.socks}`, `http://hello.demo.internal:${hello.port}/`]);
    expect(r).toMatchObject({ code: 0, out: "Hello from the private network" });
  });

  test("curl -x --proxytunnel reaches the Resource with CONNECT", async () => {
    const r = await curl([
      "-x",
      `http://${client.socks}`,
      "--proxytunnel",
      "-v",
      `http://hello.demo.internal:${hello.port}/`,
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toBe("Hello from the private network");
    expect(r.err).toContain(`CONNECT hello.demo.internal:${hello.port}`);
    expect(r.err).toContain("200 Connection Established");
  });

  test("a non-Resource through the HTTP proxy goes direct (split tunnel)", async () => {
    const direct = await startHttp("direct, untouched");
    try {
      const r = await curl(["-x", `http://${client.socks}`, `http://127.0.0.1:${direct.port}/`]);
      expect(r).toMatchObject({ code: 0, out: "direct, untouched" });
    } finally {
      direct.close();
    }
  });

  test("a Resource on a port its rules do not allow is refused with 403", async () => {
    const plain = await curl([
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-x",
      `http://${client.socks}`,
      "http://echo.demo.internal:22/",
    ]);
    expect(plain.out).toBe("403");
    const tunnel = await curl([
      "-x",
      `http://${client.socks}`,
      "--proxytunnel",
      "http://echo.demo.internal:22/",
    ]);
    expect(tunnel.code).not.toBe(0);
    expect(tunnel.err).toContain("403");
  });

  test("the PAC file on the proxy port sends Resources to the proxy and the rest DIRECT", async () => {
    const r = await curl([`http://${client.socks}/proxy.pac`]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("function FindProxyForURL(url, host)");
    expect(r.out).toContain(`PROXY ${client.socks}; SOCKS5 ${client.socks}`);
    expect(r.out).toContain('"hello.demo.internal"');
    expect(r.out).toContain('"hello"'); // the alias
    expect(r.out).toContain('"*.apps.demo.internal"');
    expect(r.out).toContain('["10.77.0.0","255.255.0.0"]');
    expect(r.out).toContain('return "DIRECT"');
  });
});

describe("sallyport forward", () => {
  test("bytes round-trip through a forwarded local port to an echo Resource; --config works too", async () => {
    const config = join(tmp, "forwards.conf");
    writeFileSync(
      config,
      `# the web Resource\n127.0.0.1:0=hello.demo.internal:${hello.port}  # via config\n`,
    );
    const fwd = spawnLogged(
      [
        CLIENT_BIN,
        "forward",
        "--socks",
        client.socks,
        "--config",
        config,
        `127.0.0.1:0=echo.demo.internal:${echo.port}`,
      ],
      {},
      "forward",
    );
    procs.push(fwd);
    const line = await fwd.waitFor(/^READY forwards=/);
    const web = Number(/127\.0\.0\.1:(\d+)=hello\.demo\.internal/.exec(line)?.[1]);
    const echoLocal = Number(/127\.0\.0\.1:(\d+)=echo\.demo\.internal/.exec(line)?.[1]);
    const data = randomBytes(4 * 1024 * 1024);
    const back = await roundTrip(echoLocal, data);
    expect(back.length).toBe(data.length);
    expect(sha256(back)).toBe(sha256(data));
    const r = await curl([`http://127.0.0.1:${web}/`]);
    expect(r.out).toBe("Hello from the private network");
    await fwd.stop();
  }, 30_000);

  test("a bad mapping is a usage error naming it", async () => {
    const r = await run([CLIENT_BIN, "forward", "--socks", client.socks, "127.0.0.1:1=db.corp.internal"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('"127.0.0.1:1=db.corp.internal"');
  });
});

describe("sallyport pipe", () => {
  test("stdin reaches an echo Resource and its answer comes back on stdout; exit 0", async () => {
    const data = randomBytes(256 * 1024);
    const proc = Bun.spawn(
      [CLIENT_BIN, "pipe", "--socks", client.socks, "echo.demo.internal", String(echo.port)],
      {
        stdin: "pipe",
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    proc.stdin.write(data);
    await proc.stdin.end();
    const out = new Uint8Array(await new Response(proc.stdout).arrayBuffer());
    expect(await proc.exited).toBe(0);
    expect(sha256(out)).toBe(sha256(data));
  });

  test("the remote closing ends the pipe with exit 0 while stdin is still open", async () => {
    const proc = Bun.spawn(
      [CLIENT_BIN, "pipe", "--socks", client.socks, "hello.demo.internal", String(hello.port)],
      { stdin: "pipe", stdout: "pipe", stderr: "pipe" },
    );
    proc.stdin.write("GET / HTTP/1.0\r\nHost: hello.demo.internal\r\n\r\n");
    await proc.stdin.flush();
    const out = await new Response(proc.stdout).text();
    const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => "still running")]);
    expect(code).toBe(0);
    expect(out).toStartWith("HTTP/1.1 200 OK");
    expect(out).toEndWith("Hello from the private network");
    await proc.stdin.end();
  });

  test("a refusal exits 1 and names the SOCKS reply", async () => {
    const r = await run([CLIENT_BIN, "pipe", "--socks", client.socks, "echo.demo.internal", "22"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("SOCKS reply 2 (not allowed by the ACL)");
  });

  test("ssh -o ProxyCommand='sallyport pipe %h %p' runs a command on a real sshd", async () => {
    // ssh and sshd are test dependencies (.ci/run installs them): missing ones fail the test.
    expect(haveSsh).toBe(true);
    const sshd = await startSshd({ port: sshdPort });
    const r = await run([
      "ssh",
      "-F",
      "/dev/null",
      "-i",
      sshd.clientKey,
      "-p",
      String(sshdPort),
      "-o",
      `ProxyCommand=${CLIENT_BIN} pipe --socks ${client.socks} %h %p`,
      "-o",
      "StrictHostKeyChecking=no",
      "-o",
      "UserKnownHostsFile=/dev/null",
      "-o",
      "BatchMode=yes",
      "-o",
      "ConnectTimeout=15",
      `${sshd.user}@ssh.demo.internal`,
      "echo hello",
    ]);
    expect(r.err).not.toContain("sallyport pipe:");
    expect(r).toMatchObject({ code: 0, out: "hello\n" });
    await sshd.stop();
  }, 30_000);
});
