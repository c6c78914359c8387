package cli

import (
	"fmt"
	"io"
	"strings"
)

// Shells are the shells Completion writes scripts for.
var Shells = []string{"bash", "zsh", "fish", "powershell"}

// Completion writes the completion script of the program for shell.
// Dynamic arguments (node and group names) are asked of the program at
// completion time ("PROG __complete nodes"), which prints nothing when the
// agent cannot be reached.
func (p Program) Completion(w io.Writer, shell string) error {
	switch shell {
	case "bash":
		p.bash(w)
	case "zsh":
		p.zsh(w)
	case "fish":
		p.fish(w)
	case "powershell", "pwsh":
		p.powershell(w)
	default:
		return fmt.Errorf("no completion for shell %q: want one of %s", shell, strings.Join(Shells, ", "))
	}
	return nil
}

func (p Program) fn() string { return "_" + strings.ReplaceAll(p.Name, "-", "_") }

func names(cs []Command) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func flagWords(fs []Flag) []string {
	var out []string
	for _, f := range fs {
		out = append(out, "--"+f.Name)
	}
	return out
}

// valued: the flags that take a value, and those whose value is a file.
func valued(fs []Flag) (all, files []string) {
	for _, f := range fs {
		if f.Arg != "" {
			all = append(all, "--"+f.Name)
			if f.Files {
				files = append(files, "--"+f.Name)
			}
		}
	}
	return all, files
}

func (p Program) bash(w io.Writer) {
	fn := p.fn()
	gAll, gFiles := valued(p.Global)
	fmt.Fprintf(w, "# bash completion for %s (generated: %s completion bash)\n", p.Name, p.Name)
	fmt.Fprintf(w, "%s() {\n", fn)
	fmt.Fprintf(w, "\tlocal cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\" cmd=\"\" i w skip=\"\"\n")
	// Find the command: the first word that is not a flag or a flag's value.
	fmt.Fprintf(w, "\tfor ((i = 1; i < COMP_CWORD; i++)); do\n\t\tw=\"${COMP_WORDS[i]}\"\n")
	fmt.Fprintf(w, "\t\tif [ -n \"$skip\" ]; then skip=\"\"; continue; fi\n")
	fmt.Fprintf(w, "\t\tcase \"$w\" in\n")
	valuedAll := map[string]bool{}
	filesAll := map[string]bool{}
	for _, f := range gAll {
		valuedAll[f] = true
	}
	for _, f := range gFiles {
		filesAll[f] = true
	}
	for _, c := range p.Commands {
		a, fl := valued(c.Flags)
		for _, f := range a {
			valuedAll[f] = true
		}
		for _, f := range fl {
			filesAll[f] = true
		}
	}
	if len(valuedAll) > 0 {
		fmt.Fprintf(w, "\t\t%s) skip=1 ;;\n", strings.Join(sortedKeys(valuedAll), "|"))
	}
	fmt.Fprintf(w, "\t\t-*) ;;\n\t\t*) cmd=\"$w\"; break ;;\n\t\tesac\n\tdone\n")
	fmt.Fprintf(w, "\tcase \"$prev\" in\n")
	if len(filesAll) > 0 {
		fmt.Fprintf(w, "\t%s) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n", strings.Join(sortedKeys(filesAll), "|"))
	}
	if len(valuedAll) > 0 {
		fmt.Fprintf(w, "\t%s) COMPREPLY=(); return ;;\n", strings.Join(sortedKeys(valuedAll), "|"))
	}
	fmt.Fprintf(w, "\tesac\n")
	fmt.Fprintf(w, "\tif [ -z \"$cmd\" ]; then\n\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n\t\treturn\n\tfi\n",
		strings.Join(append(names(p.Commands), flagWords(p.Global)...), " "))
	fmt.Fprintf(w, "\tlocal opts=\"\" dyn=\"\" vals=\"\"\n\tcase \"$cmd\" in\n")
	for _, c := range p.Commands {
		fmt.Fprintf(w, "\t%s) opts=%q; dyn=%q; vals=%q ;;\n", c.Name, strings.Join(append(flagWords(c.Flags), flagWords(p.Global)...), " "), c.Dynamic, strings.Join(c.Values, " "))
	}
	fmt.Fprintf(w, "\tesac\n")
	fmt.Fprintf(w, "\tif [[ \"$cur\" == -* ]]; then\n\t\tCOMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n\telif [ -n \"$dyn\" ]; then\n")
	fmt.Fprintf(w, "\t\tCOMPREPLY=($(compgen -W \"$(%s __complete \"$dyn\" 2>/dev/null)\" -- \"$cur\"))\n", p.Name)
	fmt.Fprintf(w, "\telse\n\t\tCOMPREPLY=($(compgen -W \"$vals\" -- \"$cur\"))\n\tfi\n}\n")
	fmt.Fprintf(w, "complete -F %s %s\n", fn, p.Name)
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// zq escapes a description for zsh's _describe and _arguments specs, in
// single quotes.
func zq(s string) string {
	r := strings.NewReplacer(`'`, `'\''`, `[`, `\[`, `]`, `\]`, `:`, `\:`)
	return r.Replace(s)
}

func (p Program) zsh(w io.Writer) {
	fn := p.fn()
	fmt.Fprintf(w, "#compdef %s\n# zsh completion for %s (generated: %s completion zsh)\n", p.Name, p.Name, p.Name)
	spec := func(f Flag) string {
		if f.Arg == "" {
			return fmt.Sprintf("'--%s[%s]'", f.Name, zq(f.Usage))
		}
		action := " "
		if f.Files {
			action = "_files"
		}
		return fmt.Sprintf("'--%s[%s]:%s:%s'", f.Name, zq(f.Usage), zq(f.Arg), action)
	}
	fmt.Fprintf(w, "%s_names() {\n\tlocal -a n\n\tn=(${(f)\"$(%s __complete $1 2>/dev/null)\"})\n\t_describe $1 n\n}\n", fn, p.Name)
	fmt.Fprintf(w, "%s() {\n\tlocal -a cmds\n\tcmds=(\n", fn)
	for _, c := range p.Commands {
		fmt.Fprintf(w, "\t\t'%s:%s'\n", c.Name, zq(c.Summary))
	}
	fmt.Fprintf(w, "\t)\n\tlocal i cmd=\"\" skip=\"\"\n\tfor ((i = 2; i < CURRENT; i++)); do\n")
	fmt.Fprintf(w, "\t\tif [[ -n $skip ]]; then skip=\"\"; continue; fi\n\t\tcase ${words[i]} in\n")
	var vals []string
	for _, g := range p.Global {
		if g.Arg != "" {
			vals = append(vals, "--"+g.Name)
		}
	}
	if len(vals) > 0 {
		fmt.Fprintf(w, "\t\t%s) skip=1 ;;\n", strings.Join(vals, "|"))
	}
	fmt.Fprintf(w, "\t\t-*) ;;\n\t\t*) cmd=${words[i]}; break ;;\n\t\tesac\n\tdone\n")
	fmt.Fprintf(w, "\tif [[ -z $cmd ]]; then\n\t\t_describe command cmds\n")
	for _, g := range p.Global {
		fmt.Fprintf(w, "\t\t_arguments %s\n", spec(g))
	}
	fmt.Fprintf(w, "\t\treturn\n\tfi\n\tcase $cmd in\n")
	for _, c := range p.Commands {
		var specs []string
		for _, f := range append(append([]Flag{}, c.Flags...), p.Global...) {
			specs = append(specs, spec(f))
		}
		switch {
		case c.Dynamic != "":
			specs = append(specs, fmt.Sprintf("'*:%s:{%s_names %s}'", c.Dynamic, fn, c.Dynamic))
		case len(c.Values) > 0:
			specs = append(specs, fmt.Sprintf("'1:value:(%s)'", strings.Join(c.Values, " ")))
		}
		if len(specs) == 0 {
			fmt.Fprintf(w, "\t%s) ;;\n", c.Name)
			continue
		}
		fmt.Fprintf(w, "\t%s) _arguments \\\n\t\t\t%s ;;\n", c.Name, strings.Join(specs, " \\\n\t\t\t"))
	}
	fmt.Fprintf(w, "\tesac\n}\nif [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n\t%s \"$@\"\nelse\n\tcompdef %s %s\nfi\n", fn, fn, p.Name)
}

// fq quotes a string for fish, in single quotes.
func fq(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func (p Program) fish(w io.Writer) {
	fmt.Fprintf(w, "# fish completion for %s (generated: %s completion fish)\n", p.Name, p.Name)
	fmt.Fprintf(w, "complete -c %s -f\n", p.Name)
	all := strings.Join(names(p.Commands), " ")
	flagLine := func(cond string, f Flag) {
		fmt.Fprintf(w, "complete -c %s", p.Name)
		if cond != "" {
			fmt.Fprintf(w, " -n %s", fq(cond))
		}
		fmt.Fprintf(w, " -l %s", f.Name)
		if f.Arg != "" {
			fmt.Fprintf(w, " -r")
			if f.Files {
				fmt.Fprintf(w, " -F")
			}
		}
		fmt.Fprintf(w, " -d %s\n", fq(f.Usage))
	}
	for _, g := range p.Global {
		flagLine("", g)
	}
	for _, c := range p.Commands {
		fmt.Fprintf(w, "complete -c %s -n %s -a %s -d %s\n", p.Name, fq("not __fish_seen_subcommand_from "+all), c.Name, fq(c.Summary))
	}
	for _, c := range p.Commands {
		cond := "__fish_seen_subcommand_from " + c.Name
		for _, f := range c.Flags {
			flagLine(cond, f)
		}
		switch {
		case c.Dynamic != "":
			fmt.Fprintf(w, "complete -c %s -n %s -a %s\n", p.Name, fq(cond), fq("("+p.Name+" __complete "+c.Dynamic+" 2>/dev/null)"))
		case len(c.Values) > 0:
			fmt.Fprintf(w, "complete -c %s -n %s -a %s\n", p.Name, fq(cond), fq(strings.Join(c.Values, " ")))
		}
	}
}

// pq quotes a string for PowerShell, in single quotes.
func pq(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (p Program) powershell(w io.Writer) {
	fmt.Fprintf(w, "# PowerShell completion for %s (generated: %s completion powershell)\n", p.Name, p.Name)
	fmt.Fprintf(w, "# Load it with: %s completion powershell | Out-String | Invoke-Expression\n", p.Name)
	fmt.Fprintf(w, "Register-ArgumentCompleter -Native -CommandName %s, %s.exe -ScriptBlock {\n", p.Name, p.Name)
	fmt.Fprintf(w, "    param($wordToComplete, $commandAst, $cursorPosition)\n")
	fmt.Fprintf(w, "    $commands = [ordered]@{\n")
	for _, c := range p.Commands {
		fmt.Fprintf(w, "        %s = %s\n", pq(c.Name), pq(c.Summary))
	}
	fmt.Fprintf(w, "    }\n    $flags = @{\n")
	for _, c := range p.Commands {
		var fl []string
		for _, f := range append(append([]Flag{}, c.Flags...), p.Global...) {
			fl = append(fl, pq("--"+f.Name))
		}
		fmt.Fprintf(w, "        %s = @(%s)\n", pq(c.Name), strings.Join(fl, ", "))
	}
	fmt.Fprintf(w, "    }\n    $dynamic = @{\n")
	for _, c := range p.Commands {
		if c.Dynamic != "" {
			fmt.Fprintf(w, "        %s = %s\n", pq(c.Name), pq(c.Dynamic))
		}
	}
	fmt.Fprintf(w, "    }\n    $values = @{\n")
	for _, c := range p.Commands {
		if len(c.Values) > 0 {
			var vs []string
			for _, v := range c.Values {
				vs = append(vs, pq(v))
			}
			fmt.Fprintf(w, "        %s = @(%s)\n", pq(c.Name), strings.Join(vs, ", "))
		}
	}
	fmt.Fprintf(w, "    }\n")
	fmt.Fprintf(w, `    $words = @($commandAst.CommandElements | Select-Object -Skip 1 | ForEach-Object { $_.ToString() })
    if ($wordToComplete -ne '' -and $words.Count -gt 0) { $words = @($words | Select-Object -SkipLast 1) }
    $cmd = $words | Where-Object { $_ -notlike '-*' } | Select-Object -First 1
    if (-not $cmd) {
        $commands.Keys | Where-Object { $_ -like "$wordToComplete*" } | ForEach-Object {
            [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $commands[$_])
        }
        return
    }
    if ($wordToComplete -like '-*') {
        $flags[$cmd] | Where-Object { $_ -like "$wordToComplete*" } | ForEach-Object {
            [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterName', $_)
        }
        return
    }
    $candidates = @()
    if ($dynamic.ContainsKey($cmd)) { $candidates = @(& '%s' __complete $dynamic[$cmd] 2>$null) }
    elseif ($values.ContainsKey($cmd)) { $candidates = $values[$cmd] }
    $candidates | Where-Object { $_ -like "$wordToComplete*" } | ForEach-Object {
        [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $_)
    }
}
`, p.Name)
}
