package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// TestBackupWhileWriting copies a store while a writer creates and
// advances tasks without pause: the copy holds every task whose create
// returned before the backup began, each task in it whole (its three steps,
// created with it in one write), and opens as a store of its own.
func TestBackupWhileWriting(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	src := filepath.Join(dir, "tasker.db")
	s := openStore(t, Config{Path: src})

	var created atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			at := time.Now()
			p := storetest.TaskParams("ns", at, "a", "b", "c")
			if _, _, err := s.TaskCreate(ctx, p); err != nil {
				errs <- err
				return
			}
			created.Add(1)
			_, err := s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at,
				Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
				Steps: []*store.StepChange{{StepID: p.Steps[0].ID, StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}}})
			if err != nil {
				errs <- err
				return
			}
		}
	})
	require.Eventually(t, func() bool { return created.Load() >= 200 }, time.Minute, time.Millisecond)
	before := created.Load()
	dst := filepath.Join(dir, "backup.db")
	info, err := Backup(ctx, src, dst)
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}

	require.Equal(t, dst, info.Path)
	require.GreaterOrEqual(t, info.Tasks, before)
	require.LessOrEqual(t, info.Tasks, created.Load())
	require.Equal(t, 3*info.Tasks, info.Steps)
	require.NotEmpty(t, info.LastEvent)
	st, err := os.Stat(dst)
	require.NoError(t, err)
	require.Equal(t, st.Size(), info.Bytes)
	leftovers, err := filepath.Glob(filepath.Join(dir, ".backup.db.tmp-*"))
	require.NoError(t, err)
	require.Empty(t, leftovers)

	// The copy is a store: it opens, and what it holds reads back whole.
	cp := openStore(t, Config{Path: dst})
	tasks, err := cp.TaskList(ctx, &store.TaskListParams{Namespace: "ns", Limit: int(info.Tasks) + 1})
	require.NoError(t, err)
	require.Len(t, tasks, int(info.Tasks))
	for _, task := range tasks {
		steps, err := cp.StepList(ctx, task.ID)
		require.NoError(t, err)
		require.Len(t, steps, 3, "task %s", task.ID)
		// A task and its first step move in one write: the copy has both
		// moves or neither.
		require.Equal(t, task.State == state.InProgress, steps[0].State == state.InProgress, "task %s", task.ID)
	}
	// The store copied from goes on as before.
	n, err := s.TaskList(ctx, &store.TaskListParams{Namespace: "ns", Limit: int(created.Load()) + 1})
	require.NoError(t, err)
	require.Len(t, n, int(created.Load()))
}

// TestBackupOfStoppedStore copies a store no process has open, and leaves
// its file as it was: the copy is made by a read-only connection.
func TestBackupOfStoppedStore(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	src := filepath.Join(dir, "tasker.db")
	s, err := Open(ctx, Config{Path: src})
	require.NoError(t, err)
	p := storetest.TaskParams("ns", time.Now(), "a")
	_, _, err = s.TaskCreate(ctx, p)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	srcBytes, err := os.ReadFile(src)
	require.NoError(t, err)

	dst := filepath.Join(t.TempDir(), "copy.db")
	info, err := Backup(ctx, src, dst)
	require.NoError(t, err)
	require.EqualValues(t, 1, info.Tasks)
	require.EqualValues(t, 1, info.Steps)
	// SQLite leaves an empty -wal (and -shm) beside a WAL database any
	// reader opened, as its own shell does; nothing is written to them.
	if st, err := os.Stat(src + "-wal"); err == nil {
		require.Zero(t, st.Size())
	}
	now, err := os.ReadFile(src)
	require.NoError(t, err)
	require.Equal(t, srcBytes, now)

	cp := openStore(t, Config{Path: dst})
	got, err := cp.TaskGet(ctx, p.Task.ID)
	require.NoError(t, err)
	require.Equal(t, p.Task.IdentityKey, got.IdentityKey)
}

// TestBackupRefuses: a backup never overwrites a file, never creates a
// store that is not there, and copies only tasker stores; each refusal
// leaves no file behind.
func TestBackupRefuses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	src := filepath.Join(dir, "tasker.db")
	openStore(t, Config{Path: src})

	t.Run("existing file", func(t *testing.T) {
		dst := filepath.Join(dir, "precious.txt")
		require.NoError(t, os.WriteFile(dst, []byte("keep me"), 0o600))
		_, err := Backup(ctx, src, dst)
		require.ErrorIs(t, err, ErrBackupExists)
		require.ErrorContains(t, err, dst)
		b, err := os.ReadFile(dst)
		require.NoError(t, err)
		require.Equal(t, "keep me", string(b))
	})
	t.Run("the store itself", func(t *testing.T) {
		_, err := Backup(ctx, src, src)
		require.ErrorIs(t, err, ErrBackupExists)
	})
	t.Run("missing store", func(t *testing.T) {
		missing := filepath.Join(dir, "nope.db")
		_, err := Backup(ctx, missing, filepath.Join(dir, "out.db"))
		require.ErrorIs(t, err, os.ErrNotExist)
		require.ErrorContains(t, err, missing)
		require.NoFileExists(t, missing)
	})
	t.Run("not a tasker store", func(t *testing.T) {
		other := filepath.Join(dir, "notes.txt")
		require.NoError(t, os.WriteFile(other, []byte("just text, not SQLite at all"), 0o600))
		_, err := Backup(ctx, other, filepath.Join(dir, "out.db"))
		require.Error(t, err)
		require.ErrorContains(t, err, other)
	})
	t.Run("missing directory", func(t *testing.T) {
		_, err := Backup(ctx, src, filepath.Join(dir, "no", "such", "dir", "out.db"))
		require.Error(t, err)
		require.True(t, errors.Is(err, os.ErrNotExist), err)
	})

	require.NoFileExists(t, filepath.Join(dir, "out.db"))
	leftovers, err := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	require.NoError(t, err)
	require.Empty(t, leftovers)
}

// TestBackupHonoursContext: a cancelled backup stops and leaves nothing.
func TestBackupHonoursContext(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "tasker.db")
	openStore(t, Config{Path: src})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	dst := filepath.Join(dir, "out.db")
	_, err := Backup(ctx, src, dst)
	require.ErrorIs(t, err, context.Canceled)
	require.NoFileExists(t, dst)
}

// TestRestoredCursors: a store started from a backup refuses the cursors
// its original handed out after the backup, for events the restore undid,
// naming the backup's last cursor to resume from; it numbers its own new
// events above all of them, so no cursor ever names two events; and a
// backup of a restored store keeps refusing what its source refused.
func TestRestoredCursors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	origPath := filepath.Join(dir, "orig.db")
	orig := openStore(t, Config{Path: origPath})
	move := func(s *Store) {
		t.Helper()
		at := time.Now()
		p := storetest.TaskParams("ns", at, "a")
		_, _, err := s.TaskCreate(ctx, p)
		require.NoError(t, err)
		_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at,
			Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
			Steps: []*store.StepChange{{StepID: p.Steps[0].ID, StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}}})
		require.NoError(t, err)
	}
	tail := func(s *Store) string {
		t.Helper()
		c, err := s.EventTail(ctx)
		require.NoError(t, err)
		return c
	}
	list := func(s *Store, after string) (*store.EventPage, error) {
		return s.EventList(ctx, &store.EventListParams{After: after, Limit: 100})
	}

	move(orig)
	early := tail(orig)
	move(orig)
	info, err := Backup(ctx, origPath, filepath.Join(dir, "copy.db"))
	require.NoError(t, err)
	last := info.LastEvent
	move(orig)
	undone := tail(orig) // handed out after the backup

	cp := openStore(t, Config{Path: info.Path})
	_, err = list(cp, undone)
	var restored *store.CursorRestoredError
	require.ErrorAs(t, err, &restored)
	require.ErrorIs(t, err, store.ErrCursorRestored)
	require.Equal(t, last, restored.Resume)
	require.ErrorContains(t, err, "cursor "+undone+" was handed out before this store was restored from a backup that ends at cursor "+last)

	// Cursors up to the backup's last are the restored store's too.
	page, err := list(cp, early)
	require.NoError(t, err)
	require.Len(t, page.Events, 2)
	require.Equal(t, last, page.Next)
	page, err = list(cp, last)
	require.NoError(t, err)
	require.Empty(t, page.Events)

	// New events follow the restore point, above every cursor of the
	// original.
	move(cp)
	page, err = list(cp, last)
	require.NoError(t, err)
	require.Len(t, page.Events, 2)
	lastSeq, err := parseCursor(last)
	require.NoError(t, err)
	require.Equal(t, lastSeq+restoreGap+1, page.Events[0].Transition.Seq)
	_, err = list(cp, undone)
	require.ErrorIs(t, err, store.ErrCursorRestored)
	newer := tail(cp)

	// A backup of the restored store, restored in turn: both restore
	// points hold.
	info2, err := Backup(ctx, info.Path, filepath.Join(dir, "copy2.db"))
	require.NoError(t, err)
	require.Equal(t, newer, info2.LastEvent)
	move(cp)
	undone2 := tail(cp)
	cp2 := openStore(t, Config{Path: info2.Path})
	_, err = list(cp2, undone)
	require.ErrorAs(t, err, &restored)
	require.Equal(t, last, restored.Resume)
	_, err = list(cp2, undone2)
	require.ErrorAs(t, err, &restored)
	require.Equal(t, newer, restored.Resume)
	page, err = list(cp2, last)
	require.NoError(t, err)
	require.Len(t, page.Events, 2)

	// A restored store with no event of its own yet is backed up: its
	// restore point starts above the earlier one's base.
	info3, err := Backup(ctx, info2.Path, filepath.Join(dir, "copy3.db"))
	require.NoError(t, err)
	cp3 := openStore(t, Config{Path: info3.Path})
	move(cp3)
	page, err = list(cp3, newer)
	require.NoError(t, err)
	require.Len(t, page.Events, 2)
	newerSeq, err := parseCursor(newer)
	require.NoError(t, err)
	require.Equal(t, newerSeq+2*restoreGap+1, page.Events[0].Transition.Seq)
}
