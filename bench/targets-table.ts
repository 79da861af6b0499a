/**
 * Issue 12's targets table: every row, with Holdfast's figure, restic's, the ratio, the target
 * and whether it is met. Pure (figures in, lines out) so the layout can be checked on made-up
 * figures without running a bench (test/unit/bench-table.test.ts).
 */

/** One compared figure. `disturbedBy`: CPU-s that other processes used during a phase this
 * figure rests on, when that was enough to make it not comparable. `missing`: why there is no
 * figure (e.g. "needs --split"). `source`: which run or command produced the row. */
export interface Pair { holdfast?: number, restic?: number, disturbedBy?: number, missing?: string, source?: string }

export interface TableFigures {
  firstSplit: Pair
  firstShared: Pair
  agentCpu: Pair
  noChange: Pair
  restoreWall: Pair
  restoreCpu: Pair
  /** bytes */
  stored: Pair
  agentRssCorpus: Pair
  agentRssSmall: Pair
  managerRssFirst: Pair
  managerRssRestore: Pair
}

type Unit = 's' | 'CPU-s' | 'MiB' | 'bytes'

/** A ratio target (Holdfast / restic ≤ max) or an absolute one (Holdfast ≤ max, in the unit). */
export interface TargetSpec { key: keyof TableFigures, figure: string, unit: Unit, ratioMax?: number, absoluteMax?: number }

/** The rows of issue 12's table, in its order (two of its rows split in two: wall and CPU,
 * corpus A and the small-file tree, first backup and restore). */
export const ISSUE12_TARGETS: readonly TargetSpec[] = Object.freeze([
  { key: 'firstSplit', figure: 'first backup, two-host split, end to end', unit: 's', ratioMax: 0.7 },
  { key: 'firstShared', figure: 'first backup, shared 2-vCPU box', unit: 's', ratioMax: 1.0 },
  { key: 'agentCpu', figure: 'agent CPU-s, first backup', unit: 'CPU-s', ratioMax: 0.6 },
  { key: 'noChange', figure: 'no-change backup, daemons\' own time', unit: 's', ratioMax: 0.2 },
  { key: 'restoreWall', figure: 'full restore, wall', unit: 's', ratioMax: 0.7 },
  { key: 'restoreCpu', figure: 'full restore, CPU-s', unit: 'CPU-s', ratioMax: 1.0 },
  { key: 'stored', figure: 'stored bytes (packs + catalog)', unit: 'bytes', ratioMax: 1.0 },
  { key: 'agentRssCorpus', figure: 'agent peak RSS, corpus', unit: 'MiB', absoluteMax: 128 },
  { key: 'agentRssSmall', figure: 'agent peak RSS, small-file tree', unit: 'MiB', absoluteMax: 128 },
  { key: 'managerRssFirst', figure: 'manager peak RSS, first backup', unit: 'MiB', absoluteMax: 300 },
  { key: 'managerRssRestore', figure: 'manager peak RSS, restore', unit: 'MiB', absoluteMax: 300 }
])

export interface TableRow {
  key: keyof TableFigures
  figure: string
  holdfast?: number
  restic?: number
  ratio?: number
  target: string
  met?: boolean
  verdict: string
  source?: string
}

function ratioOf (a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : Math.round(a / b * 100) / 100
}

export function targetRows (figures: TableFigures, specs: readonly TargetSpec[] = ISSUE12_TARGETS): TableRow[] {
  return specs.map(spec => {
    const p = figures[spec.key]
    const ratio = ratioOf(p.holdfast, p.restic)
    const row: TableRow = { key: spec.key, figure: spec.figure, holdfast: p.holdfast, restic: p.restic, ratio, target: '', verdict: '', source: p.source }
    if (spec.ratioMax !== undefined) {
      row.target = `≤ ${spec.ratioMax}× restic`
      if (ratio !== undefined) row.met = ratio <= spec.ratioMax
    } else if (spec.absoluteMax !== undefined) {
      row.target = `≤ ${spec.absoluteMax} ${spec.unit}`
      if (p.holdfast !== undefined) row.met = p.holdfast <= spec.absoluteMax
    }
    if (row.met === undefined) row.verdict = `not measured${p.missing === undefined ? '' : ` (${p.missing})`}`
    else if (p.disturbedBy !== undefined) {
      // a figure taken while others used the CPU says nothing either way
      row.verdict = `not comparable: other processes used ${p.disturbedBy} CPU-s meanwhile`
      row.met = undefined
    } else row.verdict = row.met ? 'met' : 'MISSED'
    return row
  })
}

function show (x: number | undefined, unit: Unit): string {
  if (x === undefined) return '-'
  if (unit === 'bytes') return `${(x / 1e6).toFixed(1)} MB`
  if (unit === 'MiB') return `${x.toFixed(0)} MiB`
  return `${x.toFixed(2)} ${unit}`
}

/** One line per row, columns padded: figure, Holdfast, restic, ratio, target, verdict [source]. */
export function formatTargetTable (rows: readonly TableRow[], specs: readonly TargetSpec[] = ISSUE12_TARGETS): string[] {
  const unitOf = (key: keyof TableFigures): Unit => specs.find(s => s.key === key)?.unit ?? 's'
  const cells = rows.map(r => [
    r.figure,
    show(r.holdfast, unitOf(r.key)),
    show(r.restic, unitOf(r.key)),
    r.ratio === undefined ? '-' : `${r.ratio.toFixed(2)}×`,
    r.target,
    r.verdict + (r.source === undefined ? '' : `  [${r.source}]`)
  ])
  const head = ['figure (issue 12)', 'Holdfast', 'restic', 'ratio', 'target', 'verdict [from]']
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map(c => c[i].length)))
  const line = (c: string[]): string => c.map((x, i) => i === c.length - 1 ? x : x.padEnd(widths[i])).join('  ').trimEnd()
  return [line(head), ...cells.map(line)]
}
