/**
 * The Instance inputs, parsed with zod in `check()`. Each issue becomes a CheckFailure whose
 * `property` is the dotted path, so the user sees which field is wrong. schema.json describes the
 * same fields; test/unit/schema.test.ts keeps the two in agreement.
 */
import { z } from "zod";
import { MARK_PREFIX } from "./marks";

/** LXD instance names: 1-63 chars, letters, digits, dashes; not starting with a digit or dash. */
export const NAME_RE = /^[a-zA-Z][a-zA-Z0-9-]{0,62}$/;
const lxdName = z
  .string()
  .regex(NAME_RE, "must be 1-63 letters, digits or dashes, starting with a letter")
  .refine((s) => !s.endsWith("-"), "must not end with a dash");

export const STRATEGIES = ["auto", "live", "near-live", "stop-move-start"] as const;
export const MODES = ["pull", "push", "relay"] as const;

export const MigrationSchema = z
  .object({
    strategy: z.enum(STRATEGIES).default("auto"),
    mode: z.enum(MODES).default("pull"),
    allowRestart: z.boolean().default(true),
    timeoutSeconds: z.number().int().min(10).max(86_400).default(900),
    preCopyRounds: z.number().int().min(0).max(10).default(2),
    // Set by InstanceGroup (sdk/group.ts) on each of its instances: limits shared by the moves of
    // one group in one provider process (provider/limiter.ts).
    group: z.string().min(1).max(200).optional(),
    maxUnavailable: z.number().int().min(1).max(1000).optional(),
    maxConcurrentMoves: z.number().int().min(1).max(1000).optional(),
    maxConcurrentMovesPerServer: z.number().int().min(1).max(1000).optional(),
  })
  .strict();
export type Migration = z.infer<typeof MigrationSchema>;

const configValue = z.union([z.string(), z.number(), z.boolean()]).transform((v) => String(v));
const device = z.record(z.string(), configValue);

export const InstanceInputsSchema = z
  .object({
    name: lxdName.optional(),
    image: z.string().min(1),
    type: z.enum(["container", "virtual-machine"]).default("container"),
    config: z.record(z.string().regex(/^[a-z0-9_.-]+$/i, "config keys are dotted names"), configValue).default({}),
    devices: z.record(z.string().regex(/^[a-zA-Z0-9_.-]+$/, "device names are letters, digits, _ . -"), device).default({}),
    profiles: z.array(z.string().min(1)).default(["default"]),
    running: z.boolean().default(true),
    remote: z.string().min(1).optional(),
    target: z.string().min(1).optional(),
    project: z.string().min(1).default("default"),
    storagePool: z.string().min(1).optional(),
    description: z.string().default(""),
    adopt: z.boolean().default(false),
    migration: MigrationSchema.default({ strategy: "auto", mode: "pull", allowRestart: true, timeoutSeconds: 900, preCopyRounds: 2 }),
  })
  .strict();
export type InstanceInputs = z.infer<typeof InstanceInputsSchema>;

/** The resolved desired state: inputs with the name and remote filled in. */
export interface Desired extends InstanceInputs {
  name: string;
  remote: string;
}

export interface CheckFailure {
  property: string;
  reason: string;
}

export function parseInputs(raw: Record<string, unknown>): { value?: InstanceInputs; failures: CheckFailure[] } {
  const r = InstanceInputsSchema.safeParse(raw);
  if (!r.success) {
    return {
      failures: r.error.issues.map((i) => ({
        property: i.path.map(String).join(".") || (i.code === "unrecognized_keys" ? ((i as { keys?: string[] }).keys?.join(",") ?? "") : ""),
        reason:
          i.code === "unrecognized_keys"
            ? `unknown input ${(i as { keys?: string[] }).keys?.map((k) => `"${k}"`).join(", ")}`
            : // A bad record key (config, devices): zod says only "Invalid key in record"; say why.
              i.code === "invalid_key"
              ? ((i as { issues?: { message: string }[] }).issues ?? []).map((x) => x.message).join("; ") || i.message
              : i.message,
      })),
    };
  }
  const failures: CheckFailure[] = [];
  const v = r.data;
  for (const k of Object.keys(v.config)) {
    if (k.startsWith("volatile.")) failures.push({ property: `config.${k}`, reason: "volatile.* keys belong to LXD and cannot be set" });
    if (k.startsWith(MARK_PREFIX)) failures.push({ property: `config.${k}`, reason: `${MARK_PREFIX}* keys are written by the provider` });
  }
  for (const [n, d] of Object.entries(v.devices)) {
    if (!d.type) failures.push({ property: `devices.${n}.type`, reason: "every device needs a type (disk, nic, ...)" });
    if (d.type === "disk" && d.path === "/" && d.pool && v.storagePool && d.pool !== v.storagePool) {
      failures.push({ property: `devices.${n}.pool`, reason: `contradicts storagePool "${v.storagePool}": set the root pool with storagePool only (R6)` });
    }
  }
  for (const k of ["maxUnavailable", "maxConcurrentMoves", "maxConcurrentMovesPerServer"] as const) {
    if (v.migration[k] !== undefined && !v.migration.group) {
      failures.push({ property: `migration.${k}`, reason: `is a limit shared by the moves of a group: set migration.group too (InstanceGroup sets both)` });
    }
  }
  if (v.migration.strategy === "near-live" && v.type === "virtual-machine") {
    failures.push({ property: "migration.strategy", reason: `"near-live" is for containers; a VM moves live (R7-R10) or by stop-move-start (R3)` });
  }
  if (v.migration.strategy === "near-live" && !v.migration.allowRestart) {
    failures.push({ property: "migration.allowRestart", reason: `"near-live" restarts the container at the target (a short stop); it needs allowRestart: true (R2)` });
  }
  if (v.migration.strategy === "stop-move-start" && !v.migration.allowRestart && v.running) {
    failures.push({ property: "migration.allowRestart", reason: `"stop-move-start" stops a running instance (R2, R3); it contradicts allowRestart: false` });
  }
  return { value: failures.length ? undefined : v, failures };
}
