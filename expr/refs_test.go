package expr

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResultsNamed(t *testing.T) {
	for src, want := range map[string][]string{
		`results.split.items`:                                {"split"},
		`results["split"].items + results.extra.more`:        {"extra", "split"},
		`results.split.items.filter(i, i > context.min)`:     {"split"},
		`context.items`:                                      nil,
		`results[context.step]`:                              nil,
		`has(results.quote) ? results.quote.at : context.at`: {"quote"},
	} {
		got, err := ResultsNamed(src)
		require.NoError(t, err, src)
		require.Equal(t, want, got, src)
	}
	_, err := ResultsNamed(`results.(`)
	require.Error(t, err)
}
