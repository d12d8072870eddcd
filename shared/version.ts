// The release version: printed by both binaries (--version), reported by the connector and the
// client to the Controller, and named by the Controller where it shows release artifacts (the
// console's deploy commands). Kept equal to package.json's version by a test.
export const VERSION = "0.4.0";
