package schedule_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/schedule"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestParseRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, expr, tz, field, contains string
	}{
		{"empty", "", "", "cron", "required"},
		{"garbage", "every five minutes", "", "cron", "does not parse"},
		{"too many fields", "* * * * * * *", "", "cron", "does not parse"},
		{"out of range", "61 * * * *", "", "cron", "does not parse"},
		{"last day L", "0 0 L * *", "", "cron", "not supported"},
		{"last weekday 5L", "0 0 * * 5L", "", "cron", "not supported"},
		{"nearest weekday W", "0 0 15W * *", "", "cron", "not supported"},
		{"nth weekday #", "0 0 * * 1#2", "", "cron", "not supported"},
		{"tz in expression", "CRON_TZ=Europe/Paris 0 * * * *", "", "cron", "timezone field"},
		{"never fires", "0 0 31 2 *", "", "cron", "never fires"},
		{"step beyond the minutes", "*/90 * * * *", "", "cron", `"*/90" in the minute field: a step of 90 over 0-59 picks only minute 0, and cron steps do not carry over; for every 90 minutes, use @every 90m`},
		{"step of the whole range", "0 */24 * * *", "", "cron", `"*/24" in the hour field`},
		{"step beyond a range", "0 9-12/5 * * *", "", "cron", "a step of 5 over 9-12 picks only hour 9"},
		{"step from a start", "0 0 10/30 * *", "", "cron", "day of month"},
		{"step in a list", "0,*/70 * * * *", "", "cron", `"*/70"`},
		{"seconds", "*/60 * * * * *", "", "cron", "second field: a step of 60 over 0-59 picks only second 0, and cron steps do not carry over; for every 60 seconds, use @every 60s"},
		{"months", "0 0 1 */12 *", "", "cron", "month field"},
		{"unknown timezone", "0 * * * *", "Mars/Olympus", "timezone", "not a known IANA timezone"},
		{"Local is not a zone", "0 * * * *", "Local", "timezone", "not a known IANA timezone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := schedule.ParseNew(tc.expr, tc.tz)
			var fe *schedule.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tc.field, fe.Field)
			require.ErrorContains(t, err, tc.contains)
		})
	}
}

// Steps that pick more than their range's start parse, up to the last
// one that does.
func TestParseTakesSteps(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{"*/59 * * * *", "*/30 * * * *", "0 9-17/4 * * *", "0 0 */15 * *", "0 0 1 */6 *",
		"0 0 * * */3", "*/30 * * * * *", "5/10 * * * *", "0 */23 * * *", "0 0 1 JAN-JUN/2 *", "@every 90m"} {
		_, err := schedule.ParseNew(expr, "")
		require.NoError(t, err, expr)
	}
	// What ParseNew refuses for its steps, Parse (reading a stored
	// schedule back) still takes, as the cron parser reads it.
	spec, err := schedule.Parse("*/90 * * * *", "")
	require.NoError(t, err)
	require.Equal(t, "2026-01-01T11:00:00Z", spec.Next(utc("2026-01-01T10:02:00Z")).Format(time.RFC3339))
}

func TestNext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, expr, tz string
		after          string
		want           []string
	}{
		{"every five minutes", "*/5 * * * *", "", "2026-01-01T10:02:00Z",
			[]string{"2026-01-01T10:05:00Z", "2026-01-01T10:10:00Z", "2026-01-01T10:15:00Z"}},
		{"range and step", "0 9-17/4 * * *", "", "2026-01-01T00:00:00Z",
			[]string{"2026-01-01T09:00:00Z", "2026-01-01T13:00:00Z", "2026-01-01T17:00:00Z", "2026-01-02T09:00:00Z"}},
		{"weekdays by name", "0 8 * * MON-FRI", "", "2026-01-02T09:00:00Z", // a Friday
			[]string{"2026-01-05T08:00:00Z", "2026-01-06T08:00:00Z"}},
		{"list and month name", "0 0 1 JUL,DEC *", "", "2026-01-01T00:00:00Z",
			[]string{"2026-07-01T00:00:00Z", "2026-12-01T00:00:00Z"}},
		{"question mark", "0 12 ? * SUN", "", "2026-01-01T00:00:00Z",
			[]string{"2026-01-04T12:00:00Z", "2026-01-11T12:00:00Z"}},
		{"hourly descriptor", "@hourly", "", "2026-01-01T10:30:00Z",
			[]string{"2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"}},
		{"daily descriptor in Paris", "@daily", "Europe/Paris", "2026-01-01T12:00:00Z",
			[]string{"2026-01-01T23:00:00Z", "2026-01-02T23:00:00Z"}},
		{"seconds field", "*/20 * * * * *", "", "2026-01-01T10:00:05Z",
			[]string{"2026-01-01T10:00:20Z", "2026-01-01T10:00:40Z", "2026-01-01T10:01:00Z"}},
		{"New York 9am in winter and summer", "0 9 * * *", "America/New_York", "2026-03-07T00:00:00Z",
			// DST starts in the US on 8 March 2026: UTC-5, then UTC-4.
			[]string{"2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z", "2026-03-09T13:00:00Z"}},
		{"Kolkata half-hour offset", "0 0 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z",
			[]string{"2026-01-01T18:30:00Z", "2026-01-02T18:30:00Z"}},
		// Europe/Paris springs forward on 29 March 2026 at 02:00 → 03:00:
		// 02:30 does not exist that day, and the parser does not fire it.
		{"Paris 02:30 spring forward skips the day", "30 2 * * *", "Europe/Paris", "2026-03-28T12:00:00Z",
			[]string{"2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"}},
		// Europe/Paris falls back on 25 October 2026 at 03:00 → 02:00:
		// 02:30 happens twice that day, and the parser fires both.
		{"Paris 02:30 fall back fires twice", "30 2 * * *", "Europe/Paris", "2026-10-24T12:00:00Z",
			[]string{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"}},
		{"Paris half-hourly across fall back", "*/30 * * * *", "Europe/Paris", "2026-10-24T23:50:00Z",
			[]string{"2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := schedule.Parse(tc.expr, tc.tz)
			require.NoError(t, err)
			at := utc(tc.after)
			var got []string
			for range tc.want {
				at = s.Next(at)
				got = append(got, at.Format(time.RFC3339))
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestNextNAndBetween(t *testing.T) {
	t.Parallel()
	s, err := schedule.Parse("*/15 * * * *", "")
	require.NoError(t, err)
	// At a fire time, NextN includes it.
	require.Equal(t, []time.Time{utc("2026-01-01T10:00:00Z"), utc("2026-01-01T10:15:00Z")}, s.NextN(utc("2026-01-01T10:00:00Z"), 2))
	// Between is inclusive at both ends.
	require.Equal(t, []time.Time{utc("2026-01-01T10:00:00Z"), utc("2026-01-01T10:15:00Z"), utc("2026-01-01T10:30:00Z")},
		s.Between(utc("2026-01-01T10:00:00Z"), utc("2026-01-01T10:30:00Z"), 0))
	require.Len(t, s.Between(utc("2026-01-01T10:00:00Z"), utc("2026-01-02T10:00:00Z"), 5), 5)
	require.Empty(t, s.Between(utc("2026-01-01T10:01:00Z"), utc("2026-01-01T10:14:00Z"), 0))
}

func TestPlan(t *testing.T) {
	t.Parallel()
	s, err := schedule.Parse("*/10 * * * *", "")
	require.NoError(t, err)
	for _, tc := range []struct {
		name        string
		cursor, now string
		window      time.Duration
		run         []string
		missed      int
		next        string
	}{
		{"not due yet", "2026-01-01T10:10:00Z", "2026-01-01T10:05:00Z", time.Hour, nil, 0, "2026-01-01T10:10:00Z"},
		{"due exactly now", "2026-01-01T10:10:00Z", "2026-01-01T10:10:00Z", time.Hour,
			[]string{"2026-01-01T10:10:00Z"}, 0, "2026-01-01T10:10:00Z"},
		{"three behind, all inside the window", "2026-01-01T10:00:00Z", "2026-01-01T10:25:00Z", time.Hour,
			[]string{"2026-01-01T10:00:00Z", "2026-01-01T10:10:00Z", "2026-01-01T10:20:00Z"}, 0, "2026-01-01T10:00:00Z"},
		{"downtime: older than the window are missed", "2026-01-01T08:00:00Z", "2026-01-01T10:25:00Z", 30 * time.Minute,
			[]string{"2026-01-01T10:00:00Z", "2026-01-01T10:10:00Z", "2026-01-01T10:20:00Z"}, 12, "2026-01-01T10:00:00Z"},
		{"window edge is inclusive", "2026-01-01T09:50:00Z", "2026-01-01T10:20:00Z", 30 * time.Minute,
			[]string{"2026-01-01T09:50:00Z", "2026-01-01T10:00:00Z", "2026-01-01T10:10:00Z", "2026-01-01T10:20:00Z"}, 0, "2026-01-01T09:50:00Z"},
		{"zero window runs only what is due this instant", "2026-01-01T09:00:00Z", "2026-01-01T10:10:00Z", 0,
			[]string{"2026-01-01T10:10:00Z"}, 7, "2026-01-01T10:10:00Z"},
		{"all missed", "2026-01-01T09:00:00Z", "2026-01-01T10:15:00Z", time.Minute,
			nil, 8, "2026-01-01T10:20:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := schedule.Plan(s, utc(tc.cursor), utc(tc.now), tc.window)
			var run []string
			for _, r := range d.Run {
				run = append(run, r.Format(time.RFC3339))
			}
			require.Equal(t, tc.run, run)
			require.Equal(t, tc.missed, d.Missed)
			require.Equal(t, utc(tc.next), d.Next)
			if tc.missed > 0 {
				require.Equal(t, utc(tc.cursor), d.MissedFirst)
				require.True(t, d.MissedLast.Before(d.Next))
			}
		})
	}
}

// fakeClock is a settable clock: the coordinator's loop reads time from a
// func, and here the test moves it.
type fakeClock struct{ now time.Time }

func (c *fakeClock) advance(d time.Duration) { c.now = c.now.Add(d) }

// TestPlanWithFakeClock walks a coordinator's loop over a day with a fake
// clock, stopping for a downtime: every fire time is either run once or
// missed once, never both and never twice.
func TestPlanWithFakeClock(t *testing.T) {
	t.Parallel()
	s, err := schedule.Parse("0 * * * *", "Europe/Paris")
	require.NoError(t, err)
	clock := &fakeClock{now: utc("2026-10-24T20:00:00Z")}
	cursor := s.Next(clock.now)
	seen := map[time.Time]string{}
	missed := 0
	step := func() {
		d := schedule.Plan(s, cursor, clock.now, 90*time.Minute)
		missed += d.Missed
		for at := d.MissedFirst; d.Missed > 0 && !at.After(d.MissedLast); at = s.Next(at) {
			require.Empty(t, seen[at], at)
			seen[at] = "missed"
		}
		for _, at := range d.Run {
			require.Empty(t, seen[at], at)
			seen[at] = "run"
		}
		cursor = d.Next
		if len(d.Run) > 0 {
			cursor = s.Next(d.Run[len(d.Run)-1])
		}
	}
	for range 6 { // 6 hours up, one firing each
		clock.advance(time.Hour)
		step()
	}
	clock.advance(10 * time.Hour) // down across the fall-back night
	step()
	for range 4 {
		clock.advance(time.Hour)
		step()
	}
	want := s.Between(utc("2026-10-24T20:00:01Z"), clock.now, 0)
	require.Len(t, seen, len(want))
	for _, at := range want {
		require.NotEmpty(t, seen[at], at)
	}
	// Ten hours down with a 90-minute window: the two newest run late,
	// the eight before them are missed.
	require.Equal(t, 8, missed)
}

func TestMissed(t *testing.T) {
	t.Parallel()
	s, err := schedule.Parse("*/5 * * * *", "")
	require.NoError(t, err)
	n, first, last, next := schedule.Missed(s, utc("2026-01-01T10:05:00Z"), utc("2026-01-01T10:21:00Z"))
	require.Equal(t, 4, n)
	require.Equal(t, utc("2026-01-01T10:05:00Z"), first)
	require.Equal(t, utc("2026-01-01T10:20:00Z"), last)
	require.Equal(t, utc("2026-01-01T10:25:00Z"), next)
	n, _, _, next = schedule.Missed(s, utc("2026-01-01T10:25:00Z"), utc("2026-01-01T10:21:00Z"))
	require.Zero(t, n)
	require.Equal(t, utc("2026-01-01T10:25:00Z"), next)
}

func TestDecide(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy            schedule.Overlap
		running, buffered bool
		want              schedule.Action
	}{
		{schedule.OverlapSkip, false, false, schedule.Create},
		{schedule.OverlapSkip, true, false, schedule.Skip},
		{schedule.OverlapAllow, true, false, schedule.Create},
		{schedule.OverlapCancelPrevious, false, false, schedule.Create},
		{schedule.OverlapCancelPrevious, true, false, schedule.CancelThenCreate},
		{schedule.OverlapBufferOne, false, false, schedule.Create},
		{schedule.OverlapBufferOne, true, false, schedule.Buffer},
		{schedule.OverlapBufferOne, true, true, schedule.Skip},
	} {
		require.Equal(t, tc.want, schedule.Decide(tc.policy, tc.running, tc.buffered), "%s running=%v buffered=%v", tc.policy, tc.running, tc.buffered)
	}
}

func TestParseOverlap(t *testing.T) {
	t.Parallel()
	o, err := schedule.ParseOverlap("")
	require.NoError(t, err)
	require.Equal(t, schedule.OverlapSkip, o)
	for _, ok := range []string{"skip", "allow", "cancel_previous", "buffer_one"} {
		o, err := schedule.ParseOverlap(ok)
		require.NoError(t, err)
		require.Equal(t, schedule.Overlap(ok), o)
	}
	_, err = schedule.ParseOverlap("queue")
	var fe *schedule.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "overlap", fe.Field)
}

func TestIdempotencyKeyAndRange(t *testing.T) {
	t.Parallel()
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	at := time.Date(2026, 10, 25, 2, 30, 0, 0, paris)
	// The key is the UTC instant: the two 02:30s of the fall-back night differ.
	require.Equal(t, "schedule:abc:"+at.UTC().Format(time.RFC3339), schedule.IdempotencyKey("abc", at))
	require.NotEqual(t, schedule.IdempotencyKey("abc", at), schedule.IdempotencyKey("abc", at.Add(-time.Hour)))
	require.NoError(t, schedule.CheckRange(utc("2026-01-01T00:00:00Z"), utc("2026-01-01T00:00:00Z")))
	err = schedule.CheckRange(utc("2026-01-02T00:00:00Z"), utc("2026-01-01T00:00:00Z"))
	require.True(t, errors.Is(err, schedule.ErrBackfillRange))
	var fe *schedule.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "from", fe.Field)
}
