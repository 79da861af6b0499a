import { strict as assert } from 'node:assert'
import { ISSUE12_TARGETS, formatTargetTable, targetRows, type TableFigures } from '../../bench/targets-table.js'

/** Made-up figures: some rows met, some missed, one disturbed, one not measured. */
const FIGURES: TableFigures = {
  firstSplit: { holdfast: 19.7, restic: 13.1, source: 'split' },
  firstShared: { holdfast: 8, restic: 10, source: 'shared box' },
  agentCpu: { holdfast: 6, restic: 12, source: 'split' },
  noChange: { holdfast: 0.88, restic: 3.23, disturbedBy: 4.5, source: 'split' },
  restoreWall: { holdfast: 14.9, restic: 6.6, source: 'split' },
  restoreCpu: { holdfast: 8.8, restic: 8.8, source: 'split' },
  stored: { holdfast: 296e6, restic: 264e6, source: 'split' },
  agentRssCorpus: { holdfast: 307, restic: 99, source: 'split' },
  agentRssSmall: { missing: 'needs the small-file tree' },
  managerRssFirst: { holdfast: 250, source: 'split' },
  managerRssRestore: { holdfast: 608, source: 'split' }
}

describe('bench targets table (issue 12)', () => {
  it('has one row per target of the issue, in its order, each with its verdict', () => {
    const rows = targetRows(FIGURES)
    assert.deepEqual(rows.map(r => r.key), ['firstSplit', 'firstShared', 'agentCpu', 'noChange', 'restoreWall', 'restoreCpu', 'stored', 'agentRssCorpus', 'agentRssSmall', 'managerRssFirst', 'managerRssRestore'])
    const by = new Map(rows.map(r => [r.key, r]))
    assert.equal(by.get('firstSplit')?.ratio, 1.5)
    assert.equal(by.get('firstSplit')?.verdict, 'MISSED')
    assert.equal(by.get('firstShared')?.verdict, 'met')
    assert.equal(by.get('agentCpu')?.ratio, 0.5)
    assert.equal(by.get('agentCpu')?.met, true)
    assert.match(by.get('noChange')?.verdict ?? '', /^not comparable: other processes used 4.5 CPU-s/)
    assert.equal(by.get('noChange')?.met, undefined, 'a disturbed row is neither met nor missed')
    assert.equal(by.get('restoreCpu')?.verdict, 'met', 'equal to the target is met (≤ 1.0×)')
    assert.equal(by.get('stored')?.verdict, 'MISSED')
    // absolute targets: Holdfast's figure against the limit, restic's shown beside it
    assert.equal(by.get('agentRssCorpus')?.verdict, 'MISSED')
    assert.equal(by.get('agentRssCorpus')?.target, '≤ 128 MiB')
    assert.equal(by.get('managerRssFirst')?.verdict, 'met')
    assert.equal(by.get('managerRssRestore')?.verdict, 'MISSED')
    assert.equal(by.get('agentRssSmall')?.verdict, 'not measured (needs the small-file tree)')
  })

  it('prints a header and one line per row with both figures, the ratio and the target', () => {
    const lines = formatTargetTable(targetRows(FIGURES))
    assert.equal(lines.length, ISSUE12_TARGETS.length + 1)
    assert.match(lines[0], /^figure \(issue 12\)\s+Holdfast\s+restic\s+ratio\s+target\s+verdict/)
    const first = lines[1]
    for (const part of ['first backup, two-host split, end to end', '19.70 s', '13.10 s', '1.50×', '≤ 0.7× restic', 'MISSED', '[split]']) assert.ok(first.includes(part), `${JSON.stringify(first)} has ${part}`)
    const stored = lines.find(l => l.startsWith('stored bytes')) ?? ''
    for (const part of ['296.0 MB', '264.0 MB', '1.12×', '≤ 1× restic']) assert.ok(stored.includes(part), `${JSON.stringify(stored)} has ${part}`)
    const rss = lines.find(l => l.startsWith('agent peak RSS, corpus')) ?? ''
    for (const part of ['307 MiB', '99 MiB', '3.10×', '≤ 128 MiB']) assert.ok(rss.includes(part), `${JSON.stringify(rss)} has ${part}`)
    const small = lines.find(l => l.startsWith('agent peak RSS, small-file tree')) ?? ''
    assert.match(small, /-\s+-\s+-\s+≤ 128 MiB\s+not measured/)
    // the columns line up: every row's target starts where the header's does
    const col = lines[0].indexOf('target')
    for (const l of lines.slice(1)) assert.equal(l.indexOf('≤'), col, l)
  })
})
