/** The provider's implementation, loaded by the thin serialized shim at call time. */
export * as instance from "./resource";
export { planText, plan } from "./planner";
export * from "./lxd/errors";
