// Proves the Automation API harness (test/helpers/engine.ts) with the real Pulumi engine:
// a tiny dynamic resource is created, updated in place, replaced and destroyed.
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { E2E_DIR, TestStack } from "../helpers/engine";

// The provider captures nothing from its surroundings, so its serialized form stays tiny.
// `size` changes in place; a change of `zone` needs a replacement.
const provider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: Record<string, unknown>) {
    return { id: "x", outs: inputs };
  },
  async diff(_id: string, olds: Record<string, unknown>, news: Record<string, unknown>) {
    const replaces = olds.zone !== news.zone ? ["zone"] : [];
    const changes = replaces.length > 0 || olds.size !== news.size;
    return { changes, replaces };
  },
  async update(_id: string, _olds: Record<string, unknown>, news: Record<string, unknown>) {
    return { outs: news };
  },
  async delete() {
    // nothing to delete
  },
};

interface ThingArgs {
  size: pulumi.Input<number>;
  zone: pulumi.Input<string>;
}

class Thing extends pulumi.dynamic.Resource {
  declare readonly size: pulumi.Output<number>;
  declare readonly zone: pulumi.Output<string>;
  constructor(name: string, args: ThingArgs, opts?: pulumi.CustomResourceOptions) {
    super(provider, name, { ...args }, opts);
  }
}

const program = async () => {
  const config = new pulumi.Config();
  const thing = new Thing("thing", {
    size: Number(config.get("size") ?? "1"),
    zone: config.get("zone") ?? "a",
  });
  return { size: thing.size, zone: thing.zone, id: thing.id };
};

afterAll(() => TestStack.cleanupAll());

describe("engine harness", () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await TestStack.create({ program, config: { size: "1", zone: "a" } });
  });

  test("up creates the dynamic resource and shows its outputs", async () => {
    const up = await stack.up();
    expect(up.outputs).toEqual({ size: 1, zone: "a", id: "x" });
    expect(up.summary.create).toBe(2); // the stack and the thing
    expect(up.ops.thing).toBe("create");
    const state = JSON.parse(await stack.exportStack());
    const types = state.deployment.resources.map((r: { type: string }) => r.type);
    expect(types).toContain("pulumi-nodejs:dynamic:Resource");
  });

  test("a change of an in-place field previews as update", async () => {
    await stack.setConfig("size", "2");
    const preview = await stack.preview();
    expect(preview.ops.thing).toBe("update");
    expect(preview.summary.update).toBe(1);
    expect(preview.summary.replace).toBeUndefined();
    const up = await stack.up();
    expect(up.outputs.size).toBe(2);
    expect(up.ops.thing).toBe("update");
  });

  test("a change of the other field previews as replace", async () => {
    await stack.setConfig("zone", "b");
    const preview = await stack.preview();
    expect(preview.ops.thing).toBe("replace");
    expect(preview.steps.thing).toEqual(expect.arrayContaining(["create-replacement", "replace", "delete-replaced"]));
    expect(preview.summary.replace).toBe(1);
  });

  test("refresh keeps the resource", async () => {
    const refresh = await stack.refresh();
    expect(refresh.summary.same).toBeGreaterThanOrEqual(1);
  });

  test("destroy removes it", async () => {
    const destroyed = await stack.destroy();
    expect(destroyed.summary.delete).toBe(2);
    const state = JSON.parse(await stack.exportStack());
    expect(state.deployment.resources ?? []).toHaveLength(0);
  });

  test("remove deletes the stack's temp dir and never throws", async () => {
    await stack.remove();
    expect(fs.existsSync(stack.dir)).toBe(false);
    await stack.remove(); // a second time is a no-op
  });
});

describe("engine harness, on-disk program (language host)", () => {
  test("fromDir runs a TypeScript program through pulumi-language-nodejs", async () => {
    fs.mkdirSync(E2E_DIR, { recursive: true });
    const dir = fs.mkdtempSync(path.join(E2E_DIR, "program-"));
    try {
      fs.writeFileSync(path.join(dir, "Pulumi.yaml"), "name: harness-disk\nruntime: nodejs\n");
      // Its own package.json: without one the Node.js runtime takes the nearest one up the tree
      // (the repo's, whose "main" is bin/sdk/index.js) and runs that instead of index.ts.
      fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "harness-disk", private: true }));
      fs.writeFileSync(
        path.join(dir, "index.ts"),
        ['import * as pulumi from "@pulumi/pulumi";', "const config = new pulumi.Config();", 'export const greeting: string = `hello ${config.require("who")}`;', ""].join("\n"),
      );
      const stack = await TestStack.fromDir(dir, { who: "engine" });
      try {
        const up = await stack.up();
        expect(up.outputs.greeting).toBe("hello engine");
        expect(up.summary.create).toBe(1);
      } finally {
        await stack.remove();
      }
      expect(fs.readdirSync(dir).filter((f) => f.startsWith("Pulumi.e2e-"))).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
