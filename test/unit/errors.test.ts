/**
 * The error family (provider/lxd/errors.ts) as a user and a script see it: each member prints
 * its own name and the context, carries its own stable code, and is told apart by `instanceof`
 * and by `code` (what `isNotFound` and `isSilent` decide on), never by its message.
 */
import * as errors from "../../provider/lxd/errors";

const { PlacementError, isNotFound, isSilent } = errors;
const members = [
  ["LxdApiError", "LXDP_API"],
  ["NotFoundError", "LXDP_NOT_FOUND"],
  ["MissingExtensionError", "LXDP_MISSING_EXTENSION"],
  ["UnreachableError", "LXDP_UNREACHABLE"],
  ["TimeoutError", "LXDP_TIMEOUT"],
  ["CertificateMismatchError", "LXDP_CERT_MISMATCH"],
  ["NotTrustedError", "LXDP_NOT_TRUSTED"],
  ["RemoteConfigError", "LXDP_REMOTE_CONFIG"],
  ["InputError", "LXDP_INPUT"],
  ["PlanRefusedError", "LXDP_PLAN_REFUSED"],
  ["LeasedError", "LXDP_LEASED"],
  ["MoveFailedError", "LXDP_MOVE_FAILED"],
] as const;

describe("the error family", () => {
  it.each(members)("%s: its own name in what is printed, code %s, a PlacementError and no other member", (name, code) => {
    const K = errors[name];
    const e = new K("it failed", { remote: "s1", instance: "web" }, "Do this.");
    expect(e.name).toBe(name);
    expect(e.code).toBe(code);
    expect(e.stack).toBe(`${name}: it failed (remote "s1", instance "web"). Do this.`);
    expect(e).toBeInstanceOf(PlacementError);
    expect(PlacementError.is(e)).toBe(true);
    for (const [other] of members) expect(e instanceof errors[other]).toBe(other === name);
  });

  it("isNotFound and isSilent decide on the code", () => {
    expect(isNotFound(new errors.NotFoundError("GET /instances/web: not found"))).toBe(true);
    expect(isNotFound(new errors.LxdApiError("not found"))).toBe(false);
    expect(isSilent(new errors.TimeoutError("x"))).toBe(true);
    expect(isSilent(new errors.UnreachableError("x"))).toBe(true);
    expect(isSilent(new errors.LxdApiError("timeout"))).toBe(false);
    expect(isNotFound(new Error("not found"))).toBe(false);
  });
});
