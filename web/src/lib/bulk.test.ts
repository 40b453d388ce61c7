import { describe, expect, it } from 'vitest';
import { TooMany, listAll, runBulk, summary } from './bulk';

describe('listAll', () => {
  it('follows pages until the last', async () => {
    const pages: Record<string, { tasks: { id: string }[]; nextPageToken?: string }> = {
      '': { tasks: [{ id: 'a' }, { id: 'b' }], nextPageToken: 'p2' },
      p2: { tasks: [{ id: 'c' }], nextPageToken: 'p3' },
      p3: { tasks: [], nextPageToken: 'p4' },
    };
    const asked: string[] = [];
    const ids = await listAll(async (token) => {
      asked.push(token ?? '');
      return pages[token ?? ''];
    });
    expect(ids).toEqual(['a', 'b', 'c']);
    expect(asked).toEqual(['', 'p2', 'p3']);
  });

  it('refuses more than the bound', async () => {
    await expect(listAll(async () => ({ tasks: [{ id: 'a' }, { id: 'b' }, { id: 'c' }] }), 2)).rejects.toThrow(TooMany);
  });
});

describe('runBulk', () => {
  it('acts on each in turn, notes refusals and goes on', async () => {
    const acted: string[] = [];
    const seen: number[] = [];
    const out = await runBulk(
      ['t-1', 't-2', 't-3'],
      async (id) => {
        acted.push(id);
        if (id === 't-2') throw new Error('task t-2 is pending');
      },
      (e) => (e as Error).message,
      (n) => seen.push(n),
    );
    expect(acted).toEqual(['t-1', 't-2', 't-3']);
    expect(seen).toEqual([1, 2, 3]);
    expect(out).toEqual({ total: 3, done: 2, refused: [{ id: 't-2', message: 'task t-2 is pending' }] });
    expect(summary(out, 'retried')).toBe('retried 2 of 3 tasks; not retried: t-2 (task t-2 is pending)');
    expect(summary({ total: 1, done: 1, refused: [] }, 'cancelled')).toBe('cancelled 1 of 1 task');
  });
});
