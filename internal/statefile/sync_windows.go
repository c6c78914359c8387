package statefile

// syncDir: NTFS makes the rename durable with the file's own flush;
// directories cannot be opened for syncing on Windows.
func syncDir(string) error { return nil }
