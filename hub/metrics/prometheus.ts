/**
 * The Prometheus text exposition format, version 0.0.4: a `# HELP` and a `# TYPE` line per
 * family, then its samples, `name{label="value",…} value [timestamp-ms]`, every sample of a
 * family together. https://prometheus.io/docs/instrumenting/exposition_formats/
 */
export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type FamilyType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  /** The sample's name when it is not the family's (a histogram's _bucket, _sum, _count). */
  name?: string;
  labels?: Record<string, string>;
  /** Labels rendered already, `{a="b"}` (kept with a series so it is not rendered on every scrape). */
  labelText?: string;
  value: number;
  timestampMs?: number;
}

export interface Family {
  name: string;
  help: string;
  type: FamilyType;
  samples: Sample[];
}

export function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function renderLabels(labels: Record<string, string> | undefined): string {
  if (!labels) return '';
  const pairs = Object.entries(labels);
  return pairs.length ? `{${pairs.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : '';
}

/** Go's float formatting as Prometheus reads it: NaN, +Inf, -Inf, else the shortest exact decimal. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export function formatSample(family: string, s: Sample): string {
  const ts = s.timestampMs !== undefined ? ` ${Math.round(s.timestampMs)}` : '';
  return `${s.name ?? family}${s.labelText ?? renderLabels(s.labels)} ${formatValue(s.value)}${ts}\n`;
}

export function formatFamily(f: Family): string {
  let out = `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
  for (const s of f.samples) out += formatSample(f.name, s);
  return out;
}

/** Cumulative buckets, as Prometheus' client libraries keep a histogram, one per value of one label. */
export class Histogram {
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly label: string,
    readonly buckets: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  ) {}

  observe(labelValue: string, seconds: number): void {
    let s = this.series.get(labelValue);
    if (!s) this.series.set(labelValue, (s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; i++) if (seconds <= this.buckets[i]!) s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }

  family(): Family {
    const samples: Sample[] = [];
    for (const [value, s] of [...this.series].sort(([a], [b]) => a.localeCompare(b))) {
      this.buckets.forEach((le, i) => samples.push({ name: `${this.name}_bucket`, labels: { [this.label]: value, le: String(le) }, value: s.counts[i]! }));
      samples.push({ name: `${this.name}_bucket`, labels: { [this.label]: value, le: '+Inf' }, value: s.count });
      samples.push({ name: `${this.name}_sum`, labels: { [this.label]: value }, value: s.sum });
      samples.push({ name: `${this.name}_count`, labels: { [this.label]: value }, value: s.count });
    }
    return { name: this.name, help: this.help, type: 'histogram', samples };
  }
}
