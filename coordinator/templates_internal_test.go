package coordinator

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/expr"
	"github.com/tasker-go/tasker/template"
)

func TestCompileKeys(t *testing.T) {
	t.Parallel()
	tpl := &template.Template{
		Namespace: "billing", Name: "charge", Version: "1.0.0",
		Concurrency: []template.Concurrency{
			{Key: "context.customer_id", MaxRunning: 1},
			{Key: `context.region + "/" + string(context.tier)`, MaxRunning: 5},
		},
		Steps: []template.Step{
			{Name: "plain", Handler: "h"},
			{
				Name: "charge", Handler: "stripe.charge", DependsOn: []string{"plain"},
				Concurrency: []template.Concurrency{{Key: "context.account_id", MaxRunning: 2}},
				RateLimits:  []template.RateLimitUse{{Name: "stripe"}, {Name: "stripe", Key: "context.account_id"}},
			},
		},
	}
	tpl.Normalize()
	require.NoError(t, template.Validate(tpl, template.Limits{}))
	ct, err := compile(tpl)
	require.NoError(t, err)

	ctx := json.RawMessage(`{"customer_id": "c1", "region": "eu", "tier": 2, "account_id": 77}`)
	key := func(p interface {
		Key(json.RawMessage) (string, error)
	}) string {
		k, err := p.Key(ctx)
		require.NoError(t, err)
		return k
	}
	require.Len(t, ct.taskKeys, 2)
	require.Equal(t, "c1", key(ct.taskKeys[0]))
	require.Equal(t, "eu/2", key(ct.taskKeys[1]))

	require.Len(t, ct.stepKeys, 2)
	require.Nil(t, ct.stepKeys[0])
	require.Len(t, ct.stepKeys[1], 1)
	require.Equal(t, "77", key(ct.stepKeys[1][0]))

	require.Len(t, ct.limitKeys, 2)
	require.Nil(t, ct.limitKeys[0])
	require.Len(t, ct.limitKeys[1], 2)
	require.Nil(t, ct.limitKeys[1][0], "no key: one bucket for the limit")
	require.Equal(t, "context.account_id", ct.limitKeys[1][1].Source())

	// A template without the fields compiles to nothing extra.
	plain, err := compile(&template.Template{Namespace: "a", Name: "b", Version: "1.0.0", Steps: []template.Step{{Name: "s", Handler: "h"}}})
	require.NoError(t, err)
	require.Nil(t, plain.taskKeys)
	require.Equal(t, [][]*expr.Program{nil}, plain.stepKeys)
}
