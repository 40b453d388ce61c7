package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker/store/sqlite"
)

// backupJSON is the -o json shape of a backup.
type backupJSON struct {
	Store         string `json:"store"`
	Backup        string `json:"backup"`
	Bytes         int64  `json:"bytes"`
	SchemaVersion int64  `json:"schema_version"`
	Tasks         int64  `json:"tasks"`
	Steps         int64  `json:"steps"`
	// LastEvent is the cursor of the newest event the backup holds.
	LastEvent string  `json:"last_event"`
	Seconds   float64 `json:"seconds"`
}

func newBackupCmd(g *globals) *cobra.Command {
	var (
		db  string
		out outputFlag
	)
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Copy a SQLite store to a new file, consistently, while coordinators keep using it",
		Long: `backup copies the SQLite store --db names to FILE, a new file, while a
coordinator keeps serving from it: the copy is one read transaction, so it
holds every write committed before the backup began and none after, and it
never holds up the coordinator's writes. The copy is checked whole (SQLite's
integrity check) and flushed to disk before it appears under FILE, so FILE
is either a complete copy or absent. FILE must not exist; the store itself
is only read. Run it on the coordinator's machine, where the file is.

To restore: stop the coordinator, put the backup in place of the store's
file (removing the store's -wal and -shm files beside it), and start the
coordinator on it. See "Backup and restore" in the README for what a
restore rolls back.

A PostgreSQL store is backed up with PostgreSQL's own tools (pg_dump, or
base backups with WAL archiving). A coordinator started on a database
restored from a dump finds that by itself and carries its event log on
past the restore, as for SQLite (see the README).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			kind, path, err := parseDB(db)
			if err != nil {
				return err
			}
			if kind == storePostgres {
				return errors.New("--db is a PostgreSQL URL: back PostgreSQL up with its own tools (pg_dump --format=custom, or base backups with WAL archiving); tasker backup copies SQLite stores")
			}
			info, err := sqlite.Backup(cmd.Context(), path, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONLine(g.env.Stdout, backupJSON{
					Store: path, Backup: info.Path, Bytes: info.Bytes, SchemaVersion: info.SchemaVersion,
					Tasks: info.Tasks, Steps: info.Steps, LastEvent: info.LastEvent, Seconds: info.Took.Seconds(),
				})
			}
			events := "no events"
			if info.LastEvent != "" {
				events = "events up to cursor " + info.LastEvent
			}
			_, err = fmt.Fprintf(g.env.Stdout, "backed up %s to %s: %s, %d tasks, %d steps, %s, schema version %d; checked in %s\n",
				path, info.Path, formatBytes(info.Bytes), info.Tasks, info.Steps, events, info.SchemaVersion,
				info.Took.Round(time.Millisecond))
			return err
		},
	}
	cmd.Flags().StringVar(&db, "db", "tasker.db", "the SQLite store to copy: a file path or sqlite:PATH, as the coordinator's --db")
	out.register(cmd)
	return cmd
}

// formatBytes is n in the largest binary unit that keeps it at least 1.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
