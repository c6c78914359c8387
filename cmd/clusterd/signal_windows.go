//go:build windows

package main

import "os"

// notifyHUP: Windows has no SIGHUP; restart the service to reload.
func notifyHUP(c chan os.Signal) {}
