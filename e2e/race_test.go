//go:build race

package e2e

// raceEnabled builds the binary under test with -race when the tests run
// with -race, so data races in the servers fail the e2e tests too.
const raceEnabled = true
