// Each tier's default per-test timeout comes from jest.config.js; a test may ask for more.
declare const __TIER_TIMEOUT__: number;
jest.setTimeout(typeof __TIER_TIMEOUT__ === "number" ? __TIER_TIMEOUT__ : 10_000);
