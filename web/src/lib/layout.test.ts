import { describe, expect, it } from 'vitest';
import { NODE_HEIGHT, NODE_WIDTH, dagEdges, layoutDag, structureKey } from './layout';

const diamond = [
  { name: 'start_workflow' },
  { name: 'branch_one_process', dependsOn: ['start_workflow'] },
  { name: 'branch_one_validate', dependsOn: ['branch_one_process'] },
  { name: 'branch_two_process', dependsOn: ['start_workflow'] },
  { name: 'branch_two_validate', dependsOn: ['branch_two_process'] },
  { name: 'merge_branches', dependsOn: ['branch_one_validate', 'branch_two_validate'] },
  { name: 'end_workflow', dependsOn: ['merge_branches'] },
];

function overlaps(a: { x: number; y: number }, b: { x: number; y: number }) {
  return Math.abs(a.x - b.x) < NODE_WIDTH && Math.abs(a.y - b.y) < NODE_HEIGHT;
}

describe('dagEdges', () => {
  it('draws an edge from each parent and skips unknown ones', () => {
    expect(dagEdges([{ name: 'a' }, { name: 'b', dependsOn: ['a', 'ghost'] }])).toEqual([
      { id: 'a->b', source: 'a', target: 'b' },
    ]);
  });
});

describe('layoutDag', () => {
  it('lays parents left of children, branches side by side', () => {
    const { positions: p } = layoutDag(diamond);
    for (const s of diamond) for (const d of s.dependsOn ?? []) expect(p.get(d)!.x).toBeLessThan(p.get(s.name)!.x);
    expect(p.get('branch_one_process')!.x).toBe(p.get('branch_two_process')!.x);
    expect(p.get('branch_one_process')!.y).not.toBe(p.get('branch_two_process')!.y);
  });

  it('lays out top to bottom when asked', () => {
    const { positions: p } = layoutDag(diamond, { direction: 'TB' });
    expect(p.get('start_workflow')!.y).toBeLessThan(p.get('end_workflow')!.y);
  });

  it('places 1,000 steps without overlap', () => {
    // Ten layers of a hundred, each step depending on two of the layer before.
    const steps = [];
    for (let l = 0; l < 10; l++) {
      for (let i = 0; i < 100; i++) {
        const deps = l === 0 ? [] : [`s${l - 1}_${i}`, `s${l - 1}_${(i * 7) % 100}`];
        steps.push({ name: `s${l}_${i}`, dependsOn: deps });
      }
    }
    const { positions, width, height } = layoutDag(steps);
    expect(positions.size).toBe(1000);
    const byLayer = new Map<number, { x: number; y: number }[]>();
    for (const [name, pos] of positions) {
      const l = Number(name.slice(1, name.indexOf('_')));
      byLayer.set(l, [...(byLayer.get(l) ?? []), pos]);
    }
    for (let l = 1; l < 10; l++) {
      expect(Math.min(...byLayer.get(l)!.map((q) => q.x))).toBeGreaterThan(Math.max(...byLayer.get(l - 1)!.map((q) => q.x)));
    }
    const layer = byLayer.get(5)!.sort((a, b) => a.y - b.y);
    for (let i = 1; i < layer.length; i++) expect(overlaps(layer[i - 1], layer[i])).toBe(false);
    expect(width).toBeGreaterThan(10 * NODE_WIDTH);
    expect(height).toBeGreaterThan(100 * NODE_HEIGHT);
  }, 60_000);
});

describe('structureKey', () => {
  it('changes with the shape, not with anything else', () => {
    const a = structureKey(diamond);
    expect(structureKey(diamond.map((s) => ({ ...s, state: 'x' })))).toBe(a);
    expect(structureKey(diamond.slice(1))).not.toBe(a);
  });
});
