package main

// underJournald: there is no journald on Windows (the service logs to the
// Event Log).
func underJournald() bool { return false }
