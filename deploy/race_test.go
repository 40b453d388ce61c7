//go:build race

package deploy

// raceEnabled builds the binaries under test with -race when the tests run
// with -race, as the rest of the run compiles its packages, so the build
// reuses the run's compiled packages (and data races fail the tests).
const raceEnabled = true
