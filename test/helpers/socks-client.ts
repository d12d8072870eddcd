// The client's SOCKS5 CONNECT client (client/socks-client.ts), re-exported for tests.
export { SocksRefused, socksConnect } from "../../client/socks-client.ts";
