// Four tiers (see README "Tests"): unit tables, client tests, end-to-end through the real
// Pulumi engine against the real LXD sandbox, and the fault matrix (run by `npm run test:faults`).
const tier = (name, timeout) => ({
  displayName: name,
  testMatch: [`<rootDir>/test/${name}/**/*.test.ts`],
  transform: { "^.+\\.ts$": ["ts-jest", { tsconfig: "<rootDir>/tsconfig.json", diagnostics: { warnOnly: false } }] },
  testEnvironment: "node",
  setupFilesAfterEnv: [`<rootDir>/test/helpers/timeouts.ts`],
  testEnvironmentOptions: { globalsCleanup: "off" },
  globals: { __TIER_TIMEOUT__: timeout },
});
module.exports = {
  projects: [tier("unit", 10_000), tier("integration", 120_000), tier("e2e", 300_000), tier("faults", 300_000)],
};
