package main

// This file holds `ovlsw up --config FILE` and `--print-config`: a YAML
// file whose keys are the flags of ovlsw up, each set as if it had been
// given on the command line.
//
// Design notes: the file is read generically over the command's pflag set,
// so every flag, present and future, is a key without a list to keep: a
// key names a flag, a scalar value is handed to the flag's Value.Set, a
// sequence's elements to Set one by one (repeatable flags). Flags given on
// the command line win over the file. The file is parsed into a yaml.Node
// (go.yaml.in/yaml/v3), not a struct, so that every error names its line.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Flags of ovlsw up about the file itself, which the file cannot set.
const (
	configFlag      = "config"
	printConfigFlag = "print-config"
)

// configFile is the --config file of one ovlsw up command line: where it
// is, what the command line gave (which wins over it), and the line of
// each key it set.
type configFile struct {
	path  string // --config; empty: no file
	print bool   // --print-config

	cmdline map[string][]string // flags given on the command line, with their values
	lines   map[string]int      // keys the file set, with their lines
}

// addFlags adds --config and --print-config to f.
func (cf *configFile) addFlags(f *pflag.FlagSet) {
	f.StringVar(&cf.path, configFlag, "", "YAML `FILE` setting any of these flags: keys named as the flags (vni: 42, peer: [a, b]); flags given on the command line win. SIGHUP reads it again")
	f.BoolVar(&cf.print, printConfigFlag, false, "print the effective configuration (file, flags and defaults) as YAML and exit")
}

// load records the flags given on the command line and sets the others
// from the file, if there is one. Its errors are one line,
// `config FILE line N: ...`.
func (cf *configFile) load(fs *pflag.FlagSet) error {
	cf.cmdline = map[string][]string{}
	fs.Visit(func(f *pflag.Flag) { cf.cmdline[f.Name] = flagValues(f) })
	cf.lines = map[string]int{}
	if cf.path == "" {
		return nil
	}
	b, err := os.ReadFile(cf.path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return cf.apply(fs, b)
}

// yamlLineRE matches the line yaml.v3 puts in its syntax errors.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// apply sets the flags of fs named in the YAML document b, but not those
// the command line gave.
func (cf *configFile) apply(fs *pflag.FlagSet, b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		msg := err.Error()
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			return fmt.Errorf("config %s line %s: %s", cf.path, m[1], m[2])
		}
		return fmt.Errorf("config %s: %s", cf.path, msg)
	}
	if len(doc.Content) == 0 {
		return nil // empty: nothing set
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return cf.errorf(top, "want a mapping of flag names to values (bind: 192.168.91.1)")
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return cf.errorf(k, "keys are flag names")
		}
		key := k.Value
		f := fs.Lookup(key)
		switch {
		case key == configFlag || key == printConfigFlag:
			return cf.errorf(k, "key %q is for the command line only", key)
		case f == nil || key == "help":
			return cf.errorf(k, "unknown key %q (see ovlsw up --help)", key)
		}
		if _, dup := cf.lines[key]; dup {
			return cf.errorf(k, "key %q given twice (first on line %d)", key, cf.lines[key])
		}
		cf.lines[key] = k.Line
		if f.Changed {
			continue // the command line wins
		}
		if err := cf.set(fs, f, v); err != nil {
			return err
		}
	}
	return nil
}

// set sets f from the YAML value v: a scalar, or for a repeatable flag a
// sequence of scalars (or one scalar).
func (cf *configFile) set(fs *pflag.FlagSet, f *pflag.Flag, v *yaml.Node) error {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	_, repeatable := f.Value.(pflag.SliceValue)
	var elems []*yaml.Node
	switch {
	case v.Kind == yaml.ScalarNode:
		elems = []*yaml.Node{v}
	case v.Kind == yaml.SequenceNode && repeatable:
		elems = v.Content
	case v.Kind == yaml.SequenceNode:
		return cf.errorf(v, "key %q: want one value, not a list", f.Name)
	case repeatable:
		return cf.errorf(v, "key %q: want a value or a list of values", f.Name)
	default:
		return cf.errorf(v, "key %q: want one value, not a mapping", f.Name)
	}
	for _, e := range elems {
		if e.Kind == yaml.AliasNode {
			e = e.Alias
		}
		if e.Kind != yaml.ScalarNode {
			return cf.errorf(e, "key %q: list elements must be single values", f.Name)
		}
		if e.Tag == "!!null" {
			return cf.errorf(e, "key %q: no value (for an empty string write \"\")", f.Name)
		}
		if err := fs.Set(f.Name, e.Value); err != nil {
			return cf.errorf(e, "key %q: invalid value %q for a %s: %v", f.Name, e.Value, f.Value.Type(), err)
		}
	}
	return nil
}

func (cf *configFile) errorf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("config %s line %d: %s", cf.path, n.Line, fmt.Sprintf(format, args...))
}

// fileError turns an error of ovlsw up about a flag that the file set
// (`--vni 0 out of range`) into one naming the file's line.
func (cf *configFile) fileError(err error) error {
	if err == nil || cf.path == "" {
		return err
	}
	msg := err.Error()
	for key, line := range cf.lines {
		if _, given := cf.cmdline[key]; given {
			continue
		}
		if regexp.MustCompile(`(^|[^-\w])--` + regexp.QuoteMeta(key) + `([^-\w]|$)`).MatchString(msg) {
			return fmt.Errorf("config %s line %d: key %q: %w", cf.path, line, key, err)
		}
	}
	return err
}

// wrapFileErrors makes c's errors name the file's line where they are
// about a flag the file set (cf.fileError).
func wrapFileErrors(c *cobra.Command, cf *configFile) {
	run := c.RunE
	c.RunE = func(c *cobra.Command, args []string) error { return cf.fileError(run(c, args)) }
}

// args returns the command line's flags as arguments, to parse them again
// with the file on a reload.
func (cf *configFile) args() []string {
	names := make([]string, 0, len(cf.cmdline))
	for name := range cf.cmdline {
		names = append(names, name)
	}
	slices.Sort(names)
	var args []string
	for _, name := range names {
		for _, v := range cf.cmdline[name] {
			args = append(args, "--"+name+"="+v)
		}
	}
	return args
}

// flagValues returns f's value as strings: the elements of a repeatable
// flag, or the one value.
func flagValues(f *pflag.Flag) []string {
	if s, ok := f.Value.(pflag.SliceValue); ok {
		return slices.Clone(s.GetSlice())
	}
	return []string{f.Value.String()}
}

// effective returns every configurable flag's value, by name.
func effective(fs *pflag.FlagSet) map[string][]string {
	m := map[string][]string{}
	fs.VisitAll(func(f *pflag.Flag) {
		if configurable(f) {
			m[f.Name] = flagValues(f)
		}
	})
	return m
}

// configurable reports whether a configuration file may set f.
func configurable(f *pflag.Flag) bool {
	return f.Name != configFlag && f.Name != printConfigFlag && f.Name != "help"
}

// printConfig writes every configurable flag of fs, sorted by name, as a
// YAML document that --config reads back to the same values. Each key is
// preceded by its flag's help as a comment.
func printConfig(w io.Writer, fs *pflag.FlagSet) error {
	top := &yaml.Node{Kind: yaml.MappingNode}
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if configurable(f) {
			names = append(names, f.Name)
		}
	})
	slices.Sort(names)
	for _, name := range names {
		f := fs.Lookup(name)
		_, usage := pflag.UnquoteUsage(f)
		k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name, HeadComment: usage}
		var v *yaml.Node
		if _, ok := f.Value.(pflag.SliceValue); ok {
			v = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for _, e := range flagValues(f) {
				v.Content = append(v.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: e})
			}
			if len(v.Content) == 0 {
				v.Style = yaml.FlowStyle // []
			}
		} else {
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: scalarTag(f), Value: f.Value.String()}
		}
		top.Content = append(top.Content, k, v)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{top}}); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// scalarTag is the YAML tag of a scalar flag's value, so that numbers and
// booleans print unquoted and strings that look like them quoted.
func scalarTag(f *pflag.Flag) string {
	switch f.Value.Type() {
	case "bool":
		return "!!bool"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		if _, err := strconv.ParseInt(f.Value.String(), 10, 64); err == nil {
			return "!!int"
		}
	}
	return "!!str"
}
