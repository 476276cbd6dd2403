/**
 * schema.json, the zod input schema (provider/inputs.ts), the provider's outputs
 * (provider/resource.ts, provider/executor.ts), the SDK's types (sdk/instance.ts, provider/move-record.ts) and the README's
 * inputs table describe the same resource. This test keeps them in agreement.
 *
 * Why agreement instead of generating schema.json from zod: the schema carries what the code
 * cannot say (descriptions naming the rule IDs, the engine-visible replaceOnChanges, enum value
 * descriptions), zod's types do not map one to one onto Pulumi's type system (a config value is
 * string | number | boolean on input and a string on output; object defaults cannot be Pulumi
 * `default`s), and a hand-written file reviewed as text is easier to read in a diff than
 * generator output. The price is drift, which is exactly what this test catches.
 *
 * The TypeScript sources are read with the compiler's parser (`ts.createSourceFile`), not its
 * type checker: parsing takes milliseconds, a type-checked program with zod's and Pulumi's
 * declarations takes many seconds.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as ts from "typescript";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { InstanceInputsSchema, MigrationSchema, MODES, STRATEGIES } from "../../provider/inputs";
import { REPLACE_FIELDS } from "../../provider/resource";

const ROOT = path.resolve(__dirname, "../..");
const read = (p: string) => fs.readFileSync(path.join(ROOT, p), "utf8");
const sortedKeys = (o: object) => Object.keys(o).sort();

// ---------------------------------------------------------------------------------------------
// schema.json

interface PropertySpec {
  type?: string;
  $ref?: string;
  items?: PropertySpec;
  additionalProperties?: PropertySpec;
  oneOf?: PropertySpec[];
  description?: string;
  default?: unknown;
  replaceOnChanges?: boolean;
  secret?: boolean;
}
interface ObjectTypeSpec {
  type: string;
  description?: string;
  properties?: Record<string, PropertySpec>;
  required?: string[];
  enum?: { value: unknown; name?: string; description?: string }[];
}
interface ResourceSpec {
  description?: string;
  inputProperties: Record<string, PropertySpec>;
  requiredInputs?: string[];
  properties: Record<string, PropertySpec>;
  required?: string[];
}
interface PackageSpec {
  name: string;
  version: string;
  description?: string;
  resources: Record<string, ResourceSpec>;
  types: Record<string, ObjectTypeSpec>;
}

const TOKEN = "lxd-placement:index:Instance";
const schemaText = read("schema.json");
const schema = JSON.parse(schemaText) as PackageSpec;
const res = schema.resources?.[TOKEN];
const typeOf = (ref: string | undefined): ObjectTypeSpec => {
  const m = /^#\/types\/(.+)$/.exec(ref ?? "");
  if (!m) throw new Error(`not a local type reference: ${ref}`);
  const t = schema.types[m[1]];
  if (!t) throw new Error(`${ref} points at no type in schema.json`);
  return t;
};
const migrationType = () => typeOf(res.inputProperties.migration.$ref);

// ---------------------------------------------------------------------------------------------
// zod

type AnyZod = z.ZodType & { def: { type: string; innerType?: AnyZod }; options?: string[]; isInt?: boolean; minValue?: number; maxValue?: number };
/** The schema under `.default()` / `.optional()`. */
function inner(s: unknown): AnyZod {
  let x = s as AnyZod;
  while (x.def.innerType) x = x.def.innerType;
  return x;
}
/** What zod fills in when the key is absent: a value, "optional" (stays absent) or "required". */
function zodDefault(s: unknown): { kind: "value"; value: unknown } | { kind: "optional" } | { kind: "required" } {
  const r = (s as z.ZodType).safeParse(undefined);
  if (!r.success) return { kind: "required" };
  return r.data === undefined ? { kind: "optional" } : { kind: "value", value: r.data };
}
const isPrimitive = (v: unknown) => ["string", "number", "boolean"].includes(typeof v);
/** A default written in a description as "Default: `<YAML flow value>`." (objects and lists). */
function describedDefault(p: PropertySpec): unknown {
  const m = /Default: `([^`]+)`/.exec(p.description ?? "");
  return m ? parseYaml(m[1]) : undefined;
}

/** The Pulumi schema type a zod field maps to. */
function expectSameType(key: string, s: unknown, p: PropertySpec): void {
  const z0 = inner(s);
  const kind = z0.def.type;
  const where = `input "${key}"`;
  switch (kind) {
    case "string":
      expect({ where, type: p.type }).toEqual({ where, type: "string" });
      break;
    case "boolean":
      expect({ where, type: p.type }).toEqual({ where, type: "boolean" });
      break;
    case "number":
      expect({ where, type: p.type }).toEqual({ where, type: z0.isInt ? "integer" : "number" });
      break;
    case "enum": {
      const t = typeOf(p.$ref);
      expect({ where, type: t.type, values: t.enum?.map((e) => e.value) }).toEqual({ where, type: "string", values: z0.options });
      break;
    }
    case "record":
      expect({ where, type: p.type, hasValues: !!p.additionalProperties }).toEqual({ where, type: "object", hasValues: true });
      break;
    case "array":
      expect({ where, type: p.type, items: p.items?.type }).toEqual({ where, type: "array", items: "string" });
      break;
    case "object":
      expect({ where, type: typeOf(p.$ref).type }).toEqual({ where, type: "object" });
      break;
    default:
      throw new Error(`${where}: no mapping for zod type "${kind}" in this test; extend expectSameType`);
  }
}

// ---------------------------------------------------------------------------------------------
// TypeScript sources, parsed

function sourceOf(file: string): ts.SourceFile {
  return ts.createSourceFile(file, read(file), ts.ScriptTarget.ES2022, true);
}
function findInterface(sf: ts.SourceFile, name: string): ts.InterfaceDeclaration {
  const found = sf.statements.find((s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === name);
  if (!found) throw new Error(`interface ${name} not found in ${sf.fileName}`);
  return found;
}
interface Member {
  name: string;
  optional: boolean;
  type?: ts.TypeNode;
}
function membersOf(decl: ts.InterfaceDeclaration | ts.ClassDeclaration): Member[] {
  const out: Member[] = [];
  for (const m of decl.members) {
    if (!(ts.isPropertySignature(m) || ts.isPropertyDeclaration(m)) || !m.name || !ts.isIdentifier(m.name)) continue;
    out.push({ name: m.name.text, optional: !!m.questionToken, type: m.type });
  }
  return out;
}
function heritage(decl: ts.InterfaceDeclaration): string[] {
  return (decl.heritageClauses ?? []).flatMap((h) => h.types.map((t) => t.expression.getText()));
}
/** String literals of a type like `pulumi.Input<"a" | "b">` or `"a" | "b"`. */
function literals(t: ts.TypeNode | undefined): string[] {
  if (!t) return [];
  if (ts.isLiteralTypeNode(t) && ts.isStringLiteral(t.literal)) return [t.literal.text];
  if (ts.isUnionTypeNode(t)) return t.types.flatMap(literals);
  if (ts.isTypeReferenceNode(t)) return (t.typeArguments ?? []).flatMap(literals);
  return [];
}

// ---------------------------------------------------------------------------------------------

describe("schema.json is a Pulumi package schema", () => {
  it("is well-formed JSON with the keys Pulumi requires", () => {
    expect(() => JSON.parse(schemaText)).not.toThrow();
    expect(schema).toMatchObject({ name: "lxd-placement", version: "0.1.0" });
    expect(typeof schema.description).toBe("string");
    expect(Object.keys(schema.resources)).toEqual([TOKEN]);
    expect(res.inputProperties).toBeInstanceOf(Object);
    expect(res.properties).toBeInstanceOf(Object);
    expect(schema.types).toBeInstanceOf(Object);
    // The version agrees with the npm package.
    expect(schema.version).toBe(JSON.parse(read("package.json")).version);
  });

  it("has a description on the resource, every property, every type and every enum value", () => {
    const missing: string[] = [];
    if (!res.description) missing.push("resource");
    for (const [bag, props] of [
      ["inputProperties", res.inputProperties],
      ["properties", res.properties],
    ] as const) {
      for (const [k, p] of Object.entries(props)) if (!p.description) missing.push(`${bag}.${k}`);
    }
    for (const [t, spec] of Object.entries(schema.types)) {
      if (!spec.description) missing.push(t);
      for (const [k, p] of Object.entries(spec.properties ?? {})) if (!p.description) missing.push(`${t}.${k}`);
      for (const e of spec.enum ?? []) if (!e.description) missing.push(`${t}=${String(e.value)}`);
    }
    expect(missing).toEqual([]);
  });

  it("every type reference resolves, and required lists name existing properties", () => {
    const refs: string[] = [];
    const walk = (v: unknown) => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object") {
        for (const [k, x] of Object.entries(v)) {
          if (k === "$ref") refs.push(String(x));
          else walk(x);
        }
      }
    };
    walk(schema);
    expect(refs.length).toBeGreaterThan(0);
    for (const r of refs) expect(() => typeOf(r)).not.toThrow();
    for (const k of res.requiredInputs ?? []) expect(Object.keys(res.inputProperties)).toContain(k);
    for (const k of res.required ?? []) expect(Object.keys(res.properties)).toContain(k);
    for (const [, t] of Object.entries(schema.types)) for (const k of t.required ?? []) expect(Object.keys(t.properties ?? {})).toContain(k);
  });

  it("defaults are only given for booleans, numbers and strings (Pulumi's metaschema allows no others)", () => {
    const bad: string[] = [];
    const check = (where: string, props: Record<string, PropertySpec>) => {
      for (const [k, p] of Object.entries(props)) if ("default" in p && !isPrimitive(p.default)) bad.push(`${where}.${k}`);
    };
    check("inputProperties", res.inputProperties);
    check("properties", res.properties);
    for (const [t, spec] of Object.entries(schema.types)) check(t, spec.properties ?? {});
    expect(bad).toEqual([]);
  });

  it("marks nothing of an Instance secret; the provider config that may hold a client key is", () => {
    expect(JSON.stringify(res)).not.toMatch(/"secret"\s*:\s*true/);
    expect((schema as unknown as { config: { variables: Record<string, unknown> } }).config.variables.remotes).toMatchObject({ type: "string", secret: true });
  });
});

describe("schema.json agrees with the zod input schema (provider/inputs.ts)", () => {
  const shape = InstanceInputsSchema.shape as Record<string, unknown>;
  const migShape = MigrationSchema.shape as Record<string, unknown>;

  it("every zod input is an inputProperty, and vice versa", () => {
    expect(sortedKeys(res.inputProperties)).toEqual(sortedKeys(shape));
  });

  it("every Migration field is a property of the Migration type, and vice versa", () => {
    expect(sortedKeys(migrationType().properties ?? {})).toEqual(sortedKeys(migShape));
  });

  it("requiredInputs are exactly the inputs zod requires", () => {
    const required = Object.entries(shape)
      .filter(([, s]) => zodDefault(s).kind === "required")
      .map(([k]) => k);
    expect([...(res.requiredInputs ?? [])].sort()).toEqual(required.sort());
    expect(res.requiredInputs).toEqual(["image"]);
    const migRequired = Object.entries(migShape)
      .filter(([, s]) => zodDefault(s).kind === "required")
      .map(([k]) => k);
    expect(migrationType().required ?? []).toEqual(migRequired);
  });

  it("types agree (string, boolean, integer, enum, map, list, object)", () => {
    for (const [k, s] of Object.entries(shape)) expectSameType(k, s, res.inputProperties[k]);
    for (const [k, s] of Object.entries(migShape)) expectSameType(`migration.${k}`, s, migrationType().properties![k]);
  });

  it("enum values are the same: type, migration.strategy, migration.mode", () => {
    const values = (ref?: string) => typeOf(ref).enum!.map((e) => e.value);
    expect(values(res.inputProperties.type.$ref)).toEqual(inner(shape.type).options);
    expect(values(migrationType().properties!.strategy.$ref)).toEqual([...STRATEGIES]);
    expect(values(migrationType().properties!.mode.$ref)).toEqual([...MODES]);
  });

  it("defaults are the same: parsing {name, image} with zod fills in what the schema says", () => {
    const parsed = InstanceInputsSchema.parse({ name: "x", image: "y" }) as Record<string, unknown>;
    const rows: { key: string; zod: unknown; schema: unknown }[] = [];
    const compare = (key: string, d: ReturnType<typeof zodDefault>, p: PropertySpec, zodValue: unknown) => {
      const schemaDefault = "default" in p ? p.default : describedDefault(p);
      rows.push({ key, zod: d.kind === "value" ? zodValue : undefined, schema: schemaDefault });
    };
    for (const [k, s] of Object.entries(shape)) {
      if (k === "name" || k === "image") continue; // given above
      compare(k, zodDefault(s), res.inputProperties[k], parsed[k]);
    }
    const mig = parsed.migration as Record<string, unknown>;
    for (const [k, s] of Object.entries(migShape)) compare(`migration.${k}`, zodDefault(s), migrationType().properties![k], mig[k]);
    // Every zod default appears in the schema (as `default`, or for objects and lists in the
    // description as "Default: `...`"), and nothing without a zod default claims one.
    for (const r of rows) expect({ key: r.key, value: r.schema }).toEqual({ key: r.key, value: r.zod });
    // The primitive ones are real Pulumi defaults, so SDKs generated from the schema apply them.
    for (const r of rows)
      if (isPrimitive(r.zod))
        expect({ key: r.key, hasDefault: r.key.startsWith("migration.") ? "default" in migrationType().properties![r.key.slice(10)] : "default" in res.inputProperties[r.key] }).toEqual({
          key: r.key,
          hasDefault: true,
        });
  });

  it("numeric limits stated in the descriptions are zod's", () => {
    for (const [k, s] of Object.entries(migShape)) {
      const n = inner(s);
      if (n.def.type !== "number") continue;
      expect({ k, description: migrationType().properties![k].description }).toEqual({ k, description: expect.stringContaining(`(${n.minValue}-${n.maxValue})`) });
    }
  });
});

describe("schema.json agrees with the provider (provider/resource.ts, provider/executor.ts)", () => {
  it("replaceOnChanges is set on exactly REPLACE_FIELDS", () => {
    const marked = Object.entries(res.inputProperties)
      .filter(([, p]) => p.replaceOnChanges)
      .map(([k]) => k);
    expect(marked.sort()).toEqual([...REPLACE_FIELDS].sort());
    expect(Object.values(res.properties).some((p) => p.replaceOnChanges)).toBe(false);
  });

  it("properties are exactly the provider's outputs (InstanceOutputs), required exactly where always present", () => {
    // InstanceOutputs extends Desired, which extends InstanceInputs (= z.infer of the zod schema)
    // with name and remote made required. Read that chain; fail loudly if it changes shape.
    const resource = findInterface(sourceOf("provider/resource.ts"), "InstanceOutputs");
    expect(heritage(resource)).toEqual(["Desired"]);
    const desired = findInterface(sourceOf("provider/inputs.ts"), "Desired");
    expect(heritage(desired)).toEqual(["InstanceInputs"]);
    expect(read("provider/inputs.ts")).toMatch(/export type InstanceInputs = z\.infer<typeof InstanceInputsSchema>;/);

    const always = new Map<string, boolean>();
    for (const [k, s] of Object.entries(InstanceInputsSchema.shape)) always.set(k, zodDefault(s).kind !== "optional");
    for (const m of membersOf(desired)) always.set(m.name, !m.optional);
    for (const m of membersOf(resource)) always.set(m.name, !m.optional);

    expect(sortedKeys(res.properties)).toEqual([...always.keys()].sort());
    const required = [...always].filter(([, a]) => a).map(([k]) => k);
    expect([...(res.required ?? [])].sort()).toEqual(required.sort());
    // The outputs added on top of the inputs.
    expect(
      membersOf(resource)
        .map((m) => m.name)
        .sort(),
    ).toEqual(["instanceId", "lastMove", "leftovers", "location", "moves", "status"]);
  });

  it("the MoveRecord type has the fields of MoveRecord in provider/move-record.ts (what the executor fills), required where not optional", () => {
    const rec = membersOf(findInterface(sourceOf("provider/move-record.ts"), "MoveRecord"));
    const t = typeOf(res.properties.lastMove.$ref);
    expect(sortedKeys(t.properties ?? {})).toEqual(rec.map((m) => m.name).sort());
    expect([...(t.required ?? [])].sort()).toEqual(
      rec
        .filter((m) => !m.optional)
        .map((m) => m.name)
        .sort(),
    );
  });

  it("outputs that echo an input share its type", () => {
    for (const k of Object.keys(res.inputProperties)) {
      const i = res.inputProperties[k];
      const o = res.properties[k];
      expect({ k, type: o.type, ref: o.$ref }).toEqual({ k, type: i.type, ref: i.$ref });
    }
  });
});

describe("schema.json agrees with the SDK (sdk/instance.ts)", () => {
  const sdk = sourceOf("sdk/instance.ts");

  it("every member of InstanceArgs is an input, and vice versa; optional exactly where not required", () => {
    const args = membersOf(findInterface(sdk, "InstanceArgs"));
    expect(args.map((m) => m.name).sort()).toEqual(sortedKeys(res.inputProperties));
    expect(
      args
        .filter((m) => !m.optional)
        .map((m) => m.name)
        .sort(),
    ).toEqual([...(res.requiredInputs ?? [])].sort());
  });

  it("every member of MigrationArgs is a Migration property, and vice versa", () => {
    const args = membersOf(findInterface(sdk, "MigrationArgs"));
    expect(args.map((m) => m.name).sort()).toEqual(sortedKeys(migrationType().properties ?? {}));
  });

  it("the SDK's literal unions are the schema's enum values", () => {
    const args = membersOf(findInterface(sdk, "InstanceArgs"));
    const mig = membersOf(findInterface(sdk, "MigrationArgs"));
    const values = (ref?: string) => typeOf(ref).enum!.map((e) => e.value);
    expect(literals(args.find((m) => m.name === "type")?.type)).toEqual(values(res.inputProperties.type.$ref));
    expect(literals(mig.find((m) => m.name === "strategy")?.type)).toEqual(values(migrationType().properties!.strategy.$ref));
    expect(literals(mig.find((m) => m.name === "mode")?.type)).toEqual(values(migrationType().properties!.mode.$ref));
  });

  it("the Instance class declares every output property, and the SDK's MoveRecord matches the schema's", () => {
    const cls = sdk.statements.find((s): s is ts.ClassDeclaration => ts.isClassDeclaration(s) && s.name?.text === "Instance");
    expect(cls).toBeDefined();
    expect(
      membersOf(cls!)
        .map((m) => m.name)
        .sort(),
    ).toEqual(sortedKeys(res.properties));
    // The SDK's MoveRecord is the provider's (one definition, imported as a type).
    expect(sdk.getText()).toMatch(/import type \{ MoveRecord \} from "\.\.\/provider\/move-record"/);
    const rec = membersOf(findInterface(sourceOf("provider/move-record.ts"), "MoveRecord"));
    const t = typeOf(res.properties.lastMove.$ref);
    expect(rec.map((m) => m.name).sort()).toEqual(sortedKeys(t.properties ?? {}));
    expect(
      rec
        .filter((m) => !m.optional)
        .map((m) => m.name)
        .sort(),
    ).toEqual([...(t.required ?? [])].sort());
  });
});

describe("the README's inputs table agrees with schema.json", () => {
  /** Rows of the first markdown table under "## Inputs": first cell's backticked name → cells. */
  function inputsTable(): Map<string, string[]> {
    const text = read("README.md");
    const start = text.indexOf("\n## Inputs\n");
    expect(start).toBeGreaterThanOrEqual(0);
    const rest = text.slice(start + "\n## Inputs\n".length);
    const section = rest.slice(0, rest.search(/\n## /) >= 0 ? rest.search(/\n## /) : undefined);
    const rows = new Map<string, string[]>();
    let inTable = false;
    for (const line of section.split("\n")) {
      if (!line.startsWith("|")) {
        if (inTable) break; // the first table only (the `migration` fields follow in their own)
        continue;
      }
      inTable = true;
      const cells = line
        .split(/(?<!\\)\|/)
        .slice(1, -1)
        .map((c) => c.trim()); // "\|" is a pipe inside a cell
      const m = /^`([^`]+)`$/.exec(cells[0] ?? "");
      if (m) rows.set(m[1], cells);
    }
    return rows;
  }

  it("lists exactly the schema's inputs", () => {
    expect([...inputsTable().keys()].sort()).toEqual(sortedKeys(res.inputProperties));
  });

  it("gives each primitive default as the schema does", () => {
    const rows = inputsTable();
    for (const [k, p] of Object.entries(res.inputProperties)) {
      if (!("default" in p)) continue;
      expect({ k, cell: rows.get(k)?.[2] }).toEqual({ k, cell: expect.stringContaining(`\`${JSON.stringify(p.default)}\``) });
    }
  });
});
