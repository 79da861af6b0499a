/**
 * Store commands (browse, verify, stats, …) run against the manager through its admin socket.
 * Registered in src/cli/main.ts.
 */
import type { Command, CommandOptions } from '../command.js'
import { print, socketHelp, socketOptions, socketPath } from '../socket.js'
import { HoldfastError } from '../../util/errors.js'
import { bytes, table } from '../format.js'
import { RULE_KEYS, UNLIMITED, callManager, parseDuration, ruleFlag, type ManagerCommands, type PruneEndpoint, type PruneResult, type RetentionRules, type RetentionShow, type SnapshotSelection, type TreeEntry, type VerifyReport } from '../../admin/api.js'

const SOCKET_HELP = socketHelp('manager')

const LONG_MS = 24 * 3600_000

export function intOption (values: Record<string, unknown>, key: string): number | undefined {
  const v = values[key]
  if (v === undefined) return undefined
  const n = Number(v)
  if (typeof v !== 'string' || !/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new HoldfastError('ADMIN_BAD_REQUEST', `--${key} needs a whole number, not '${String(v)}'`)
  return n
}

/** --at T: an ISO date or date-time (a date-time without a zone is local time). */
export function parseAt (text: string): number {
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim())) {
    throw new HoldfastError('ADMIN_BAD_REQUEST', `--at needs an ISO date or date-time (2024-05-01, 2024-05-01T17:30, 2024-05-01T17:30:00Z), not '${text}'`)
  }
  // a date alone is the start of that day, local time, like a date-time without a zone
  const t = text.trim().replace(' ', 'T')
  const ms = Date.parse(/^\d{4}-\d{2}-\d{2}$/.test(t) ? `${t}T00:00` : t)
  if (Number.isNaN(ms)) throw new HoldfastError('ADMIN_BAD_REQUEST', `--at: '${text}' is not a valid date`)
  return ms
}

export function selection (values: Record<string, unknown>): SnapshotSelection {
  const out: SnapshotSelection = {}
  if (values.at !== undefined && values.snapshot !== undefined) throw new HoldfastError('ADMIN_BAD_REQUEST', 'give --at or --snapshot, not both')
  if (typeof values.at === 'string') out.at = parseAt(values.at)
  const snapshot = intOption(values, 'snapshot')
  if (snapshot !== undefined) out.snapshot = snapshot
  return out
}

/** ls -l style: type letter and rwx bits from st_mode. */
export function modeString (mode: number | undefined, type: string): string {
  if (mode === undefined) return type === 'dir' ? 'd?????????' : '??????????'
  const kind = type === 'dir' ? 'd' : type === 'symlink' ? 'l' : type === 'special' ? ((mode & 0o170000) === 0o010000 ? 'p' : (mode & 0o170000) === 0o140000 ? 's' : (mode & 0o170000) === 0o060000 ? 'b' : 'c') : '-'
  const bits = ['r', 'w', 'x', 'r', 'w', 'x', 'r', 'w', 'x'].map((c, i) => (mode & (0o400 >> i)) !== 0 ? c : '-')
  if ((mode & 0o4000) !== 0) bits[2] = bits[2] === 'x' ? 's' : 'S'
  if ((mode & 0o2000) !== 0) bits[5] = bits[5] === 'x' ? 's' : 'S'
  if ((mode & 0o1000) !== 0) bits[8] = bits[8] === 'x' ? 't' : 'T'
  return kind + bits.join('')
}

function when (iso: string | undefined): string {
  return iso === undefined || iso === '' ? '-' : iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')
}

function lsRow (e: TreeEntry): string[] {
  const name = e.type === 'dir' ? `${e.name}/` : e.type === 'symlink' && e.target !== undefined ? `${e.name} -> ${e.target}` : e.name
  return [modeString(e.mode, e.type), e.type === 'file' ? bytes(e.size) : '-', when(e.mtime), e.snapshotId === undefined ? '-' : String(e.snapshotId), name]
}

function ratio (r: number): string { return r === 0 ? '-' : `${r.toFixed(2)}x` }

function verifyText (r: VerifyReport): string {
  const n = (count: number, what: string): string => `${count} ${what}${count === 1 ? '' : 's'}`
  const head = `verify${r.readData ? ' --read-data' : ''}: ${n(r.packs.total, 'pack')}, ${n(r.chunks.total, 'chunk')}${r.readData ? `, ${bytes(r.chunks.bytesRead)} read` : ''}, ${n(r.versions, 'file version')} in ${(r.ms / 1000).toFixed(1)} s`
  const lines = [r.ok ? `${head}: OK` : `${head}: ${n(r.problemsTotal, 'problem')} (${Object.entries(r.problemCounts).map(([k, n]) => `${n} ${k}`).join(', ')})`]
  if (r.packs.unreferenced.length > 0) lines.push(`note: ${r.packs.unreferenced.length} pack file(s) hold no chunk the catalog knows (left by an interrupted pull, or just started): ${r.packs.unreferenced.slice(0, 5).join(', ')}${r.packs.unreferenced.length > 5 ? ', …' : ''}`)
  if (r.ok) return lines.join('\n')
  lines.push('', table(['PROBLEM', 'PACK', 'OFFSET', 'CHUNK', 'DETAIL'], r.problems.map(p => [
    p.kind, p.pack ?? '-', p.offset === undefined ? '-' : String(p.offset), p.chunk === undefined ? '-' : p.chunk.slice(0, 16), p.message
  ])))
  if (r.problems.length < r.problemsTotal) lines.push(`… and ${r.problemsTotal - r.problems.length} more (--json --limit N lists more)`)
  if (r.damaged.filesTotal > 0) {
    lines.push('', `damaged files (${r.damaged.filesTotal}): a restore of these versions would fail`)
    lines.push(table(['ENDPOINT', 'FILE', 'VERSION', 'IN SNAPSHOTS', 'REASON', 'BAD CHUNKS'], r.damaged.files.map(f => [
      f.endpoint, f.path, String(f.snapshotId),
      f.inSnapshots.count === 0 ? '-' : f.inSnapshots.first === f.inSnapshots.last ? String(f.inSnapshots.first) : `${f.inSnapshots.first}..${f.inSnapshots.last} (${f.inSnapshots.count})`,
      f.reason, f.chunks.map(c => c.slice(0, 12)).join(' ')
    ])))
    if (r.damaged.files.length < r.damaged.filesTotal) lines.push(`… and ${r.damaged.filesTotal - r.damaged.files.length} more`)
  }
  if (r.damaged.snapshotsTotal > 0) {
    const byEndpoint = new Map<string, number[]>()
    for (const s of r.damaged.snapshots) byEndpoint.set(s.endpoint, [...(byEndpoint.get(s.endpoint) ?? []), s.id])
    lines.push('', `damaged snapshots (${r.damaged.snapshotsTotal}): ${[...byEndpoint].map(([e, ids]) => `${e}: ${ids.join(', ')}`).join('; ')}${r.damaged.snapshots.length < r.damaged.snapshotsTotal ? ' …' : ''}`)
  }
  if (r.damaged.chunksTotal > 0) lines.push(`damaged chunks (${r.damaged.chunksTotal}): ${r.damaged.chunks.slice(0, 10).join(' ')}${r.damaged.chunksTotal > 10 ? ' …' : ''}`)
  return lines.join('\n')
}

const RETENTION_OPTIONS: CommandOptions = Object.fromEntries([...RULE_KEYS.map(k => [ruleFlag(k), { type: 'string' as const }]), ['min-age', { type: 'string' as const }]])

/** The keep rules given on the command line (undefined: none given). */
function rulesOption (values: Record<string, unknown>): RetentionRules | undefined {
  let any = false
  const rules: RetentionRules = {}
  for (const k of RULE_KEYS) {
    const v = values[ruleFlag(k)]
    if (v === undefined) continue
    any = true
    if (v === 'unlimited') { rules[k] = UNLIMITED; continue }
    const n = Number(v)
    if (typeof v !== 'string' || !/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new HoldfastError('ADMIN_BAD_REQUEST', `--${ruleFlag(k)} needs a whole number or 'unlimited', not '${String(v)}'`)
    rules[k] = n
  }
  if (typeof values['min-age'] === 'string') { any = true; rules.minAgeMs = parseDuration(values['min-age']) }
  return any ? rules : undefined
}

function retentionText (r: RetentionShow): string {
  const hold = (h: boolean, from?: string): string => h ? `held${from === undefined ? '' : ` (${from})`}` : '-'
  return [
    `all endpoints: ${r.global.text}${r.global.hold ? '; legal hold' : ''}`,
    ...(r.endpoints.length === 0
      ? []
      : ['', table(['ENDPOINT', 'SNAPSHOTS', 'POLICY', 'FROM', 'HOLD'], r.endpoints.map(e => [
          e.endpoint, String(e.snapshots), e.effective.text, e.effective.rulesFrom === 'none' ? '-' : e.effective.rulesFrom === 'endpoint' ? 'own' : 'all endpoints', hold(e.effective.hold, e.effective.holdFrom === 'endpoint' ? 'own' : e.effective.holdFrom === 'global' ? 'all endpoints' : undefined)
        ]))])
  ].join('\n')
}

function pruneEndpointText (e: PruneEndpoint, dryRun: boolean): string {
  const head = `${e.endpoint}: ${e.policy.text}: ${dryRun ? 'would keep' : 'kept'} ${e.kept} of ${e.snapshots.length} snapshots` +
    (e.removed > 0 ? `, ${dryRun ? 'would remove' : 'removed'} ${e.removed} (${e.versionsDropped} file versions dropped, ${e.versionsMoved} moved to a kept snapshot)` : '')
  if (e.removed === 0) return head
  return head + '\n' + table(['SNAPSHOT', 'SET', 'COMMITTED', 'ACTION', 'WHY'], e.snapshots.map(s => [
    String(s.id), String(s.setId), when(new Date(s.committedAt).toISOString()),
    s.keep ? 'keep' : 'remove', s.keep ? s.reasons.join(', ') : `no rule keeps it; its latest versions go to ${String(s.mergedInto ?? '-')}`
  ])).split('\n').map(l => `  ${l}`).join('\n')
}

function pruneText (r: PruneResult): string {
  const would = (a: string, b: string): string => r.dryRun ? a : b
  const lines = r.endpoints.length === 0 ? ['no snapshots'] : r.endpoints.map(e => pruneEndpointText(e, r.dryRun))
  lines.push('')
  lines.push(`snapshots: ${would('would remove', 'removed')} ${r.snapshots.removed} of ${r.snapshots.total}; file versions: ${r.versions.dropped} ${would('would be dropped', 'dropped')}, ${r.versions.moved} ${would('would move', 'moved')} to a kept snapshot`)
  lines.push(`chunks: ${r.chunks.dead} unreferenced (${bytes(r.chunks.deadBytes)}); ${r.chunks.reclaimed} (${bytes(r.chunks.reclaimedBytes)}) ${would('would be freed', 'freed')}` +
    (r.chunks.left > 0 ? `, ${r.chunks.left} (${bytes(r.chunks.leftBytes)}) stay in ${r.packs.belowThreshold} pack(s) under ${Math.round(r.repackThreshold * 100)}% dead` : ''))
  lines.push(`packs: ${r.packs.deleted} ${would('would be deleted', 'deleted')}, ${r.packs.repacked} ${would('would be repacked', 'repacked')} (${bytes(r.bytes.copied)} of live data ${would('to copy', 'copied')})` +
    (r.packs.orphans > 0 ? `, ${r.packs.orphans} unreferenced ${would('would be removed', 'removed')}` : '') + `; ${r.packs.before} → ${r.packs.after}${r.dryRun ? ' (about)' : ''}`)
  lines.push(`space: ${bytes(r.bytes.reclaimed)} ${would('would come back', 'came back')}, ${bytes(r.bytes.before)} → ${bytes(r.bytes.after)}${r.dryRun ? '' : ` in ${(r.ms / 1000).toFixed(1)} s`}${r.lockWaitMs >= 1000 ? ` (waited ${(r.lockWaitMs / 1000).toFixed(1)} s for a pull to finish)` : ''}`)
  for (const p of r.packs.problems) lines.push(`problem: pack ${p.pack}: ${p.message}`)
  return lines.join('\n')
}

/** --repack-threshold: a percentage ("10", "10%", "2.5"). */
function percentOption (values: Record<string, unknown>, key: string): number | undefined {
  const v = values[key]
  if (v === undefined) return undefined
  const m = typeof v === 'string' ? /^(\d+(\.\d+)?)%?$/.exec(v.trim()) : null
  const n = m === null ? NaN : Number(m[1])
  if (!(n >= 0 && n <= 100)) throw new HoldfastError('ADMIN_BAD_REQUEST', `--${key} needs a percentage from 0 to 100, not '${String(v)}'`)
  return n / 100
}

export const storeCommands: Record<string, Command> = {
  ls: {
    summary: 'list an endpoint\'s backed-up files under a path, as of a snapshot or a time',
    usage: `holdfast ls ENDPOINT [FOLDER[/PATH]] [--at TIME | --snapshot ID] [--limit N] [options]

Lists what the store holds of ENDPOINT (peer id, its unique suffix, or name) under
FOLDER/PATH, one level deep like ls: a directory's entries, or a file itself. Without a path,
the endpoint's protected folders. The tree is the endpoint's latest snapshot unless
  --at TIME         the newest snapshot committed at or before TIME (ISO date or date-time,
                    e.g. 2024-05-01 or 2024-05-01T17:30; without a zone, local time)
  --snapshot ID     that snapshot (one of ENDPOINT's)
  --limit N         list at most N entries (default 10000; 0 = all)
Paths are matched as UTF-8; a name shown with \\xNN escapes can be given the same way.
${SOCKET_HELP}`,
    options: { ...socketOptions, at: { type: 'string' }, snapshot: { type: 'string' }, limit: { type: 'string' } },
    run: async (values, positionals) => {
      const [endpoint, path, ...extra] = positionals
      if (endpoint === undefined || extra.length > 0) throw new HoldfastError('ADMIN_BAD_REQUEST', 'usage: holdfast ls ENDPOINT [FOLDER[/PATH]] (see holdfast ls --help)')
      const args: ManagerCommands['ls']['request'] = { endpoint, ...selection(values) }
      if (path !== undefined) args.path = path
      const limit = intOption(values, 'limit')
      if (limit !== undefined) args.limit = limit
      const r = await callManager(socketPath(values, 'manager'), 'ls', args, { timeoutMs: LONG_MS })
      print(values, r, () => {
        const head = `${r.endpoint.name || r.endpoint.peerId}, snapshot ${r.snapshot.id} (${when(new Date(r.snapshot.committedAt).toISOString())})${r.path === '' ? '' : `: ${r.path}`}`
        if (r.entries.length === 0) return `${head}\n(empty)`
        const rows = r.kind === 'root'
          ? table(['FOLDER'], r.entries.map(e => [`${e.name}/`]))
          : table(['MODE', 'SIZE', 'MODIFIED', 'SNAPSHOT', 'NAME'], r.entries.map(lsRow))
        return `${head}\n${rows}${r.truncated ? `\n… more entries (--limit 0 lists all)` : ''}`
      })
      return 0
    }
  },
  versions: {
    summary: 'list every stored version of one path of an endpoint',
    usage: `holdfast versions ENDPOINT FOLDER/PATH [options]

Every version the store holds of FOLDER/PATH on ENDPOINT, oldest first: the snapshot that
recorded it, when that snapshot was committed, type, size, modification time, and deletions.
${SOCKET_HELP}`,
    options: socketOptions,
    run: async (values, positionals) => {
      const [endpoint, path, ...extra] = positionals
      if (endpoint === undefined || path === undefined || extra.length > 0) throw new HoldfastError('ADMIN_BAD_REQUEST', 'usage: holdfast versions ENDPOINT FOLDER/PATH (see holdfast versions --help)')
      const r = await callManager(socketPath(values, 'manager'), 'versions', { endpoint, path }, { timeoutMs: LONG_MS })
      print(values, r, () => `${r.endpoint.name || r.endpoint.peerId}: ${r.path}\n` + table(['SNAPSHOT', 'COMMITTED', 'TYPE', 'SIZE', 'MODIFIED', 'MODE'], r.versions.map(v => [
        String(v.snapshotId), when(new Date(v.committedAt).toISOString()), v.deleted ? 'deleted' : v.type, v.type === 'file' ? bytes(v.size) : '-', when(v.mtime), v.deleted ? '-' : modeString(v.mode, v.type)
      ])))
      return 0
    }
  },
  find: {
    summary: 'find paths across the fleet by a glob pattern',
    usage: `holdfast find PATTERN [--endpoint PEER|NAME] [--limit N] [options]

Every path of every endpoint that matches PATTERN, with its latest version (deleted ones too).
PATTERN is a glob: * (within a name), ? (one character), [abc], [a-z], [!x], ** (any number of
directories), \\ escapes the next character and \\xNN is the byte NN (as ls shows a non-UTF-8
name). Without a '/' it matches a name at any depth ('*.docx'); with one, the
whole path under a folder ('docs/**/report*'), the folder's name included or not
('home/docs/*.md'). Quote it, so the shell leaves it alone.
  --endpoint E      only this endpoint
  --limit N         at most N paths (default 1000; 0 = all)
${SOCKET_HELP}`,
    options: { ...socketOptions, endpoint: { type: 'string' }, limit: { type: 'string' } },
    run: async (values, positionals) => {
      const [pattern, ...extra] = positionals
      if (pattern === undefined || extra.length > 0) throw new HoldfastError('ADMIN_BAD_REQUEST', 'usage: holdfast find PATTERN (quote the pattern; see holdfast find --help)')
      const args: ManagerCommands['find']['request'] = { pattern }
      if (typeof values.endpoint === 'string') args.endpoint = values.endpoint
      const limit = intOption(values, 'limit')
      if (limit !== undefined) args.limit = limit
      const r = await callManager(socketPath(values, 'manager'), 'find', args, { timeoutMs: LONG_MS })
      print(values, r, () => r.hits.length === 0
        ? `nothing matches '${r.pattern}'`
        : table(['ENDPOINT', 'PATH', 'TYPE', 'SIZE', 'MODIFIED', 'SNAPSHOT', 'STATE'], r.hits.map(h => [
          h.endpoint, h.path, h.type, h.type === 'file' ? bytes(h.size) : '-', when(h.mtime), String(h.snapshotId),
          h.deleted ? (h.liveSnapshotId === undefined ? 'deleted' : `deleted (last in ${h.liveSnapshotId})`) : ''
        ])) + (r.truncated ? '\n… more matches (--limit 0 lists all)' : ''))
      return 0
    }
  },
  stats: {
    summary: 'show logical and stored bytes, and the dedup ratio, per endpoint and in total',
    usage: `holdfast stats [options]

For each endpoint's latest tree: its files and their logical size, the distinct chunks it
references and their stored (compressed) size, the ratio of the two, and how much of that no
other endpoint shares. The total counts a chunk that endpoints share once; the store line counts
every chunk, older versions' included.
${SOCKET_HELP}`,
    options: socketOptions,
    run: async (values) => {
      const s = await callManager(socketPath(values, 'manager'), 'stats', {}, { timeoutMs: LONG_MS })
      print(values, s, () => [
        table(['ENDPOINT', 'SNAPSHOT', 'FILES', 'LOGICAL', 'UNIQUE', 'STORED', 'RATIO', 'NOT SHARED'], [
          ...s.endpoints.map(e => [e.endpoint, e.snapshotId === undefined ? '-' : String(e.snapshotId), String(e.files), bytes(e.logicalBytes), bytes(e.uniqueBytes), bytes(e.storedBytes), ratio(e.dedupRatio), bytes(e.ownBytes)]),
          ['total', '', String(s.total.files), bytes(s.total.logicalBytes), bytes(s.total.uniqueBytes), bytes(s.total.storedBytes), ratio(s.total.dedupRatio), '']
        ]),
        `store: ${s.total.storeChunks} chunks, ${bytes(s.total.storeBytes)} in ${s.total.snapshots} snapshots (older versions included)`
      ].join('\n'))
      return 0
    }
  },
  verify: {
    summary: 'check that the catalog and the packs agree (--read-data: re-hash every chunk)',
    usage: `holdfast verify [--read-data] [--limit N] [options]

Checks every chunk the catalog names: its pack exists, its record lies inside the pack and its
header names that chunk and length, and every file version's chunks are in the index and add up
to its size. With --read-data, also reads, decompresses and re-hashes every chunk (reads the
whole store). Reports each problem with the damaged files (endpoint, path, the snapshot that
recorded the version, the snapshots that hold it). Exit status 1 when anything is wrong.
  --read-data       re-read and re-hash all chunk data
  --limit N         list at most N problems, files, snapshots (default 1000; counts are exact)
${SOCKET_HELP}`,
    options: { ...socketOptions, 'read-data': { type: 'boolean' }, limit: { type: 'string' } },
    run: async (values, positionals) => {
      if (positionals.length > 0) throw new HoldfastError('ADMIN_BAD_REQUEST', 'verify takes no arguments (see holdfast verify --help)')
      const args: ManagerCommands['verify']['request'] = { readData: values['read-data'] === true }
      const limit = intOption(values, 'limit')
      if (limit !== undefined) args.limit = limit
      const live = values.json !== true && process.stderr.isTTY
      const r = await callManager(socketPath(values, 'manager'), 'verify', args, {
        timeoutMs: LONG_MS,
        onProgress: p => {
          if (!live) return
          const data = p.bytesTotal > 0 ? `, ${bytes(p.bytesRead)} of ${bytes(p.bytesTotal)}` : ''
          process.stderr.write(`\r\x1b[K${p.phase}: ${p.packsDone}/${p.packsTotal} packs, ${p.chunksDone}/${p.chunksTotal} chunks${data}${p.problems > 0 ? `, ${p.problems} problems` : ''}`)
        }
      })
      if (live) process.stderr.write('\r\x1b[K')
      print(values, r, () => verifyText(r))
      return r.ok ? 0 : 1
    }
  },
  retention: {
    summary: 'show or set which snapshots prune keeps (per endpoint or for all; legal holds)',
    usage: `holdfast retention show [--endpoint E] [options]
holdfast retention set [--endpoint E] [--keep-last N] [--keep-hourly N] [--keep-daily N]
                       [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--min-age D]
                       [--clear] [--hold | --release] [options]

Retention decides which snapshots \`holdfast prune\` removes. Without a policy every snapshot is
kept. A policy is for every endpoint (no --endpoint) or for one (peer id, unique suffix, name);
an endpoint's own rules replace the global rules as a whole.
  --keep-last N       keep the N newest snapshots
  --keep-hourly N     keep the newest snapshot of each of the last N hours that have one
  --keep-daily N      … of the last N days; --keep-weekly (ISO weeks), --keep-monthly, --keep-yearly
                      likewise; N may be 'unlimited' (one for every period)
  --min-age D         never remove a snapshot younger than D (30d, 12h, 2w, 6m, 1y, 1y6m)
  --clear             remove the rules of this scope (an endpoint then follows the global rules;
                      the global scope then keeps everything)
  --hold              legal hold: nothing of this endpoint (of every endpoint, without
                      --endpoint) is removed until --release
  --release           lift the hold of this scope
A snapshot kept by any rule is kept; the newest snapshot of an endpoint is always kept; periods
are calendar periods in the manager's local time; a snapshot's time is when it was committed.
'set' replaces the keep rules of its scope with those given (keeps them when only --hold or
--release is given).
${SOCKET_HELP}`,
    options: { ...socketOptions, ...RETENTION_OPTIONS, endpoint: { type: 'string' }, clear: { type: 'boolean' }, hold: { type: 'boolean' }, release: { type: 'boolean' } },
    run: async (values, positionals) => {
      const [action, ...extra] = positionals
      if ((action !== 'show' && action !== 'set') || extra.length > 0) throw new HoldfastError('ADMIN_BAD_REQUEST', 'usage: holdfast retention show|set [options] (see holdfast retention --help)')
      if (action === 'show') {
        const rules = rulesOption(values)
        if (rules !== undefined || values.clear === true || values.hold === true || values.release === true) throw new HoldfastError('ADMIN_BAD_REQUEST', "'retention show' takes no rules; use 'retention set'")
        let r = await callManager(socketPath(values, 'manager'), 'retention-show', {})
        if (typeof values.endpoint === 'string') {
          const ref = values.endpoint
          const matches = r.endpoints.filter(e => e.peerId === ref || e.endpoint === ref || e.peerId.endsWith(ref))
          if (matches.length !== 1) throw new HoldfastError('PEER_UNKNOWN', matches.length === 0 ? `no endpoint '${ref}' in the catalog` : `'${ref}' matches ${matches.length} endpoints; use the full peer id`)
          r = { ...r, endpoints: matches }
        }
        print(values, r, () => retentionText(r))
        return 0
      }
      const args: ManagerCommands['retention-set']['request'] = {}
      if (typeof values.endpoint === 'string') args.endpoint = values.endpoint
      const rules = rulesOption(values)
      if (rules !== undefined && values.clear === true) throw new HoldfastError('ADMIN_BAD_REQUEST', 'give keep rules or --clear, not both')
      if (rules !== undefined) args.rules = rules
      if (values.clear === true) args.rules = null
      if (values.hold === true && values.release === true) throw new HoldfastError('ADMIN_BAD_REQUEST', 'give --hold or --release, not both')
      if (values.hold === true) args.hold = true
      if (values.release === true) args.hold = false
      if (Object.keys(args).filter(k => k !== 'endpoint').length === 0) throw new HoldfastError('ADMIN_BAD_REQUEST', 'retention set needs keep rules, --min-age, --clear, --hold or --release (see holdfast retention --help)')
      const r = await callManager(socketPath(values, 'manager'), 'retention-set', args)
      print(values, r, () => retentionText(r))
      return 0
    }
  },
  prune: {
    summary: 'remove snapshots by the retention policies and reclaim the space they held',
    usage: `holdfast prune [--dry-run] [--repack-threshold PERCENT] [options]

Removes the snapshots no retention rule keeps (see holdfast retention --help; without a policy
nothing is removed), then reclaims the chunks no remaining file version uses: packs that hold
only such chunks are deleted, packs where at least PERCENT of the bytes are such chunks are
repacked (their live chunks copied to a new pack). The trees of the snapshots that stay are not
changed: a removed snapshot's latest versions move to the next kept snapshot. Runs while no
pull is in progress (it waits for one to end, and holds the next one off).
  --dry-run                 show what would go, per endpoint and snapshot, and the space that
                            would come back; change nothing
  --repack-threshold PCT    repack a pack when at least PCT% of it is dead (default 10)
${SOCKET_HELP}`,
    options: { ...socketOptions, 'dry-run': { type: 'boolean' }, 'repack-threshold': { type: 'string' } },
    run: async (values, positionals) => {
      if (positionals.length > 0) throw new HoldfastError('ADMIN_BAD_REQUEST', 'prune takes no arguments (see holdfast prune --help)')
      const args: ManagerCommands['prune']['request'] = { dryRun: values['dry-run'] === true }
      const threshold = percentOption(values, 'repack-threshold')
      if (threshold !== undefined) args.repackThreshold = threshold
      const live = values.json !== true && process.stderr.isTTY
      const r = await callManager(socketPath(values, 'manager'), 'prune', args, {
        timeoutMs: LONG_MS,
        onProgress: p => {
          if (!live) return
          process.stderr.write(`\r\x1b[K${p.phase}${p.packsTotal > 0 ? `: ${p.packsDone}/${p.packsTotal} packs` : ''}`)
        }
      })
      if (live) process.stderr.write('\r\x1b[K')
      print(values, r, () => pruneText(r))
      return r.packs.problems.length === 0 ? 0 : 1
    }
  }
}
