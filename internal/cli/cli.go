// Package cli describes a command-line program once — its commands, their
// arguments, flags and examples — and renders that description as a man
// page and as completion scripts for bash, zsh, fish and PowerShell, so
// help, man pages and completions never disagree. The flags come from the
// commands' own flag.FlagSets (FlagsOf), not from a second list.
package cli

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Flag is one command-line flag.
type Flag struct {
	Name  string
	Arg   string // the value's placeholder; "" for a boolean flag
	Usage string
	// Files: the value is a path (completion offers files).
	Files bool
}

// Command is one verb of a program.
type Command struct {
	Name     string
	Args     string // synopsis of the positional arguments, e.g. "[NODE]"
	Summary  string // one line
	Examples string // lines of examples, each "  cmd   # comment"
	Flags    []Flag
	// Complete says what the positional arguments are, for completion:
	// Dynamic "nodes" or "groups" (the program's hidden "__complete
	// KIND" prints the names) or fixed Values.
	Dynamic string
	Values  []string
}

// Program is a whole command-line program.
type Program struct {
	Name        string
	Summary     string
	Description string // paragraphs separated by blank lines
	Global      []Flag // flags accepted before or after any command
	Commands    []Command
	ExitStatus  string // paragraphs
	Environment string
	Files       string
	SeeAlso     []string // "clusterd(8)"
	Section     string   // "1" or "8"
}

var goTypes = map[string]bool{"value": true, "string": true, "duration": true, "int": true, "uint": true, "float": true}

// PrintFlags writes flags as a command's --help shows them.
func PrintFlags(w io.Writer, flags []Flag) {
	for _, f := range flags {
		if f.Arg == "" {
			fmt.Fprintf(w, "  --%s\n      %s\n", f.Name, f.Usage)
		} else {
			fmt.Fprintf(w, "  --%s %s\n      %s\n", f.Name, f.Arg, f.Usage)
		}
	}
}

// FlagsOf lists fs's flags in name order. A flag whose placeholder is
// FILE or PATH completes file names.
func FlagsOf(fs *flag.FlagSet) []Flag {
	var out []Flag
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			arg = ""
		} else if arg == "" || goTypes[arg] {
			arg = strings.ToUpper(f.Name) // no `PLACEHOLDER` in the usage
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			usage += " (default " + f.DefValue + ")"
		}
		out = append(out, Flag{Name: f.Name, Arg: arg, Usage: usage, Files: arg == "FILE" || arg == "PATH" || f.Name == "config" || f.Name == "out" || f.Name == "socket"})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Usage is the program's short help: the synopsis of every command.
func (p Program) Usage(w io.Writer) {
	fmt.Fprintf(w, "%s — %s\n\nusage: %s", p.Name, p.Summary, p.Name)
	for _, g := range p.Global {
		fmt.Fprintf(w, " [--%s %s]", g.Name, g.Arg)
	}
	fmt.Fprintf(w, " COMMAND [flags]\n\ncommands:\n")
	for _, c := range p.Commands {
		syn := strings.TrimSpace(c.Name + " " + c.Args)
		for _, f := range c.Flags {
			if f.Arg == "" {
				syn += " [--" + f.Name + "]"
			} else {
				syn += " [--" + f.Name + " " + f.Arg + "]"
			}
		}
		if len(syn) <= 28 {
			fmt.Fprintf(w, "  %-28s %s\n", syn, c.Summary)
		} else {
			fmt.Fprintf(w, "  %s\n  %-28s %s\n", syn, "", c.Summary)
		}
	}
}

// Command returns the command called name.
func (p Program) Command(name string) (Command, bool) {
	for _, c := range p.Commands {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
}

// roff escapes text for a man page line.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// Man writes the program's man page (roff, man macros). date is the
// page's date, e.g. the release's (a fixed value keeps builds
// reproducible).
func (p Program) Man(w io.Writer, version, date string) {
	up := strings.ToUpper(p.Name)
	fmt.Fprintf(w, ".TH %s %s %q %q %q\n", up, p.Section, date, p.Name+" "+version, "clusterd")
	fmt.Fprintf(w, ".SH NAME\n%s \\- %s\n", p.Name, roff(p.Summary))
	fmt.Fprintf(w, ".SH SYNOPSIS\n")
	for _, c := range p.Commands {
		fmt.Fprintf(w, ".B %s\n", p.Name)
		for _, g := range p.Global {
			fmt.Fprintf(w, "[\\fB\\-\\-%s\\fR \\fI%s\\fR]\n", g.Name, roff(g.Arg))
		}
		fmt.Fprintf(w, ".B %s\n", c.Name)
		if c.Args != "" {
			fmt.Fprintf(w, ".I %s\n", roff(c.Args))
		}
		if len(c.Flags) > 0 {
			fmt.Fprintf(w, "[\\fIflags\\fR]\n")
		}
		fmt.Fprintf(w, ".br\n")
	}
	fmt.Fprintf(w, ".SH DESCRIPTION\n")
	paras(w, p.Description)
	if len(p.Global) > 0 {
		fmt.Fprintf(w, ".SH OPTIONS\n")
		for _, g := range p.Global {
			flagItem(w, g)
		}
	}
	fmt.Fprintf(w, ".SH COMMANDS\n")
	for _, c := range p.Commands {
		fmt.Fprintf(w, ".SS %s\n", roff(strings.TrimSpace(c.Name+" "+c.Args)))
		fmt.Fprintf(w, "%s\n", roff(c.Summary))
		for _, f := range c.Flags {
			flagItem(w, f)
		}
		if c.Examples != "" {
			fmt.Fprintf(w, ".PP\nExamples:\n.PP\n.nf\n.RS 4\n")
			for _, l := range strings.Split(strings.TrimRight(c.Examples, "\n"), "\n") {
				fmt.Fprintf(w, "%s\n", roff(strings.TrimSpace(l)))
			}
			fmt.Fprintf(w, ".RE\n.fi\n")
		}
	}
	for _, sec := range []struct{ title, text string }{{"EXIT STATUS", p.ExitStatus}, {"ENVIRONMENT", p.Environment}, {"FILES", p.Files}} {
		if sec.text != "" {
			fmt.Fprintf(w, ".SH %s\n", sec.title)
			paras(w, sec.text)
		}
	}
	if len(p.SeeAlso) > 0 {
		fmt.Fprintf(w, ".SH SEE ALSO\n")
		for i, s := range p.SeeAlso {
			name, sec, _ := strings.Cut(strings.TrimSuffix(s, ")"), "(")
			sep := ","
			if i == len(p.SeeAlso)-1 {
				sep = ""
			}
			fmt.Fprintf(w, ".BR %s (%s)%s\n", name, sec, sep)
		}
	}
}

func flagItem(w io.Writer, f Flag) {
	if f.Arg == "" {
		fmt.Fprintf(w, ".TP\n.B \\-\\-%s\n%s\n", f.Name, roff(f.Usage))
		return
	}
	fmt.Fprintf(w, ".TP\n\\fB\\-\\-%s\\fR \\fI%s\\fR\n%s\n", f.Name, roff(f.Arg), roff(f.Usage))
}

func paras(w io.Writer, text string) {
	for i, p := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if i > 0 {
			fmt.Fprintf(w, ".PP\n")
		}
		for _, l := range strings.Split(p, "\n") {
			fmt.Fprintf(w, "%s\n", roff(l))
		}
	}
}
