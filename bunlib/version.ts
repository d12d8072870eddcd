// The version both binaries print with --version and report to the Controller (the connector in
// its registration and heartbeats, the client at sign-in). Kept equal to package.json's version
// by a test; `npm run release` checks the built binaries print it.
export const VERSION = "0.1.0";
