package sqlite

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// TestTaskCountPlans pins every TaskCount filter to a covering index: the
// counts read index entries, never task rows (whose contexts may be large),
// and the index's order forms the groups, so no row is sorted.
func TestTaskCountPlans(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{})
	storetest.SeedTasks(t, s, "ns", 20)
	for _, tc := range []struct {
		params store.TaskCountParams
		index  string
	}{
		{store.TaskCountParams{}, "tasks_state_id"},
		{store.TaskCountParams{Namespace: "ns"}, "tasks_namespace_name_state"},
		{store.TaskCountParams{Namespace: "ns", Name: "linear"}, "tasks_namespace_name_state"},
		{store.TaskCountParams{Name: "linear"}, "tasks_namespace_name_state"},
	} {
		query, args := taskCountQuery(&tc.params)
		plan := explainPlan(t, s, query, args...)
		t.Logf("%+v: %s", tc.params, plan)
		require.Contains(t, plan, "USING COVERING INDEX "+tc.index, "%+v: %s", tc.params, plan)
		if tc.params.Namespace != "" || tc.params.Name == "" {
			// A name alone (across namespaces) is the one filter whose
			// entries the index does not hold together; its groups are
			// formed by a temporary tree.
			require.NotContains(t, plan, "TEMP B-TREE", "%+v: %s", tc.params, plan)
		}
	}
}

// TestTaskCountPlansReadingRows pins the filters no index of states holds:
// a time or id bound reads the primary key's range, a key its two unique
// indexes, so neither reads the whole table; a context match alone scans
// it, as a list by context does.
func TestTaskCountPlansReadingRows(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{})
	storetest.SeedTasks(t, s, "ns", 20)
	match := []store.ContextMatch{{Path: []string{"order_id"}, Value: 42.0}}
	for _, tc := range []struct {
		params store.TaskCountParams
		want   []string
	}{
		{store.TaskCountParams{FromID: "0190"}, []string{"SEARCH tasks USING PRIMARY KEY (id>?)"}},
		{store.TaskCountParams{FromID: "0190", BeforeID: "01f0", Context: match}, []string{"SEARCH tasks USING PRIMARY KEY (id>? AND id<?)"}},
		{store.TaskCountParams{Namespace: "ns", Key: "k"}, []string{"MULTI-INDEX OR", "(id=?)", "(identity_key=?)"}},
		{store.TaskCountParams{Context: match}, []string{"SCAN tasks"}},
		{store.TaskCountParams{Namespace: "ns", Name: "linear", Context: match}, []string{"tasks_namespace_name_state (namespace=? AND name=?)"}},
	} {
		query, args := taskCountQuery(&tc.params)
		plan := explainPlan(t, s, query, args...)
		t.Logf("%s: %s", query, plan)
		for _, w := range tc.want {
			require.Contains(t, plan, w, "%+v: %s", tc.params, plan)
		}
	}
}
