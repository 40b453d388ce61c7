package tasker_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker"
)

func TestOpenAPIIsTheGeneratedDocument(t *testing.T) {
	t.Parallel()
	var doc struct {
		Swagger string `json:"swagger"`
		Info    struct {
			Title string `json:"title"`
		} `json:"info"`
		Paths map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal([]byte(tasker.OpenAPI()), &doc))
	require.Equal(t, "2.0", doc.Swagger)
	require.Equal(t, "Tasker coordinator REST/JSON API", doc.Info.Title, "the header set in coordinator_openapi.yaml")
	require.Contains(t, doc.Paths["/api/v1/tasks"], "post")
	require.Contains(t, doc.Paths["/api/v1/tasks/{id}:cancel"], "post")
	require.Contains(t, doc.Paths["/api/v1/task-counts"], "get")
}
