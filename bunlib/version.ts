// The version both binaries print with --version and report to the Controller (the connector in
// its registration and heartbeats, the client at sign-in): shared/version.ts, which the Controller
// reads too. Kept equal to package.json's version by a test; `npm run release` checks the built
// binaries print it.
export { VERSION } from "../shared/version.ts";
