package main

import "flag"

// parseInterspersed parses flags that may come before or after the
// positional arguments ("drain web2 --wait" as well as "drain --wait web2"),
// as operators type them.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
