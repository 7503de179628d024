// Config parsing compatible with uWSGI 2.0 (core/config.c, core/ini.c,
// core/xmlconf.c, core/json.c, core/yaml.c and core/logic.c): the ordered option
// list built from the environment, the command line and config files in every
// format uWSGI accepts, with magic variables, placeholders and logic blocks.
//
// The parser mirrors uWSGI's order of operations closely because observable
// results (which value wins, what %(x) expands to, what --show-config prints)
// depend on it; testdata/config/corpus is checked against uwsgi-core. Where
// uWSGI would hang, crash or read without bounds, this code returns a one-line
// "file:line: message" error instead. Deliberate differences:
//   - errors: unterminated %( $( @(, self-referencing placeholders, include and
//     inherit loops, NUL bytes, files over 16 MiB, FIFOs and devices, stdin
//     ("-") and URL schemes other than exec://;
//   - "config", "include", "inherit" and trailing files pick the format from
//     the file part, so "x.ini:section" works (uWSGI only loads it via --ini);
//   - YAML: uWSGI's line subset plus what Debian's libyaml build accepts in
//     practice (sequences, [a, b], quoting, nested keys flattened, '#' after a
//     blank, block scalars as libyaml reads them);
//   - if-hostname-match: PCRE's syntax without its extensions (listed at
//     configRegexpMatch), on bytes; a pattern beyond it matches nothing;
//   - options uWSGI executes but that do not shape the list (declare-option,
//     blacklist, inject-before, plugins...) are kept but not executed; no
//     plugin is ever loaded for if-plugin.

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Option is one key/value pair, kept in configuration order.
type Option struct {
	_     noCompare
	Key   string
	Value string
	Src   string // where it came from: "file.ini:12", "command line", "environment"
}

// Options is the ordered option list uWSGI builds while parsing.
type Options struct {
	List []Option
	// placeholders are the keys used as placeholders: read by %(key) or
	// if-opt, or declared by set-placeholder. Such a key needs no option
	// of that name.
	placeholders map[string]bool
}

// Placeholder reports whether key is used or declared as a placeholder.
func (o *Options) Placeholder(key string) bool { return o != nil && o.placeholders[key] }

// The accessors are read once per config and called from many places:
// kept out of line, each call site is a call, not a copy of the loop.

// Last returns the value of the last occurrence of any of the names (aliases), and whether one was found.
//
//go:noinline
func (o *Options) Last(names ...string) (string, bool) {
	if o == nil {
		return "", false
	}
	for i := len(o.List) - 1; i >= 0; i-- {
		if configNameIn(o.List[i].Key, names) {
			return o.List[i].Value, true
		}
	}
	return "", false
}

// All returns every value of any of the names, in order.
//
//go:noinline
func (o *Options) All(names ...string) []string {
	if o == nil {
		return nil
	}
	var out []string
	for _, op := range o.List {
		if configNameIn(op.Key, names) {
			out = append(out, op.Value)
		}
	}
	return out
}

// Flag reports whether a boolean option is on: present, and its last value is
// not false/off/no/0 (case-insensitive). Empty value = on.
func (o *Options) Flag(names ...string) bool {
	v, ok := o.Last(names...)
	return ok && configTrue(v)
}

// Int returns atoi of the last value (garbage -> 0 like uWSGI), or def when absent.
func (o *Options) Int(def int, names ...string) int {
	v, ok := o.Last(names...)
	if !ok {
		return def
	}
	return int(configAtoi(v))
}

// Has reports whether any of the names is present.
func (o *Options) Has(names ...string) bool {
	_, ok := o.Last(names...)
	return ok
}

func configNameIn(key string, names []string) bool {
	for _, n := range names {
		if key == n {
			return true
		}
	}
	return false
}

// configTrue is uwsgi_opt_true: "0" is compared case-sensitively there too,
// which makes no difference for a digit.
func configTrue(v string) bool {
	switch strings.ToLower(v) {
	case "false", "off", "no", "0":
		return false
	}
	return true
}

// configAtoi behaves like C strtoll(v, NULL, 10): leading blanks, optional
// sign, digits up to the first non-digit, saturating on overflow.
func configAtoi(v string) int64 {
	i := 0
	for i < len(v) && (v[i] == ' ' || (v[i] >= '\t' && v[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(v) && (v[i] == '+' || v[i] == '-') {
		neg = v[i] == '-'
		i++
	}
	var n uint64
	const limit = uint64(1) << 63
	for ; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
		n = n*10 + uint64(v[i]-'0')
		if n >= limit {
			if neg {
				return -1 << 63
			}
			return 1<<63 - 1
		}
	}
	if neg {
		return -int64(n)
	}
	return int64(n)
}

// ShowConfig renders o in uWSGI's --show-config format, byte for byte what
// uWSGI logs (including the blank line before and after the block).
func ShowConfig(o *Options) string {
	var b strings.Builder
	b.WriteString("\n;uWSGI instance configuration\n[uwsgi]\n")
	if o != nil {
		for _, op := range o.List {
			b.WriteString(op.Key)
			b.WriteString(" = ")
			b.WriteString(op.Value)
			b.WriteByte('\n')
		}
	}
	b.WriteString(";end of configuration\n\n")
	return b.String()
}

// Limits that keep hostile or broken input from exhausting the machine.
const (
	configMaxFileSize   = 16 << 20 // bytes read from one config file or @() reference
	configMaxValueSize  = 4 << 20  // bytes an option value may grow to by expansion
	configMaxExpansions = 10000    // replacements in one value (self-reference guard)
	configMaxExpandWork = 1 << 26  // bytes rescanned after replacements, whole parse
	configMaxTotalRead  = 1 << 28  // bytes read from files and commands, whole parse
	configMaxNesting    = 64       // nested include/inherit depth
	configMaxOptions    = 100000   // total options (for-loops and includes multiply)
	configExecTimeout   = 60 * time.Second
)

// configNoExec disables exec:// (a shell command); fuzz tests set it.
var configNoExec atomic.Bool

// configWarn receives non-fatal diagnostics uWSGI prints (missing INI section).
var configWarn = func(msg string) { fmt.Fprintln(os.Stderr, msg) }

// ParseSpec tells ParseArgs how to read a command line.
type ParseSpec struct {
	// Known reports whether name is a recognised command-line option and whether it is a flag (takes no argument).
	// An unknown option on the command line is an error "unrecognized option '--name'". Config FILE keys are not
	// checked here (uWSGI takes any key as a placeholder), only in strict mode.
	Known func(name string) (known, isFlag bool)
	// Optional reports whether a known option's argument is optional (getopt's optional_argument): "--name"
	// alone has none, only "--name=v" gives one.
	Optional func(name string) bool
	// Short is the long name of a one-letter option ("" if there is none), for "-s ADDR", "-M", "-Mp4".
	Short func(c byte) string
	// Suggest is the closest known name to an unknown one, for a "did you mean" ("" for none).
	Suggest    func(name string) string
	Environ    []string // the environment (os.Environ()); UWSGI_* become options, $(VAR) reads it
	Cwd        string   // startup cwd, for %v and relative paths (defaults to os.Getwd())
	BinaryPath string   // for %b
	Version    string   // for %V
	// OneFile refuses to read any file but the first (the config named on
	// the command line): a parse made on the emperor's loop must not read
	// what a config points it at (a /proc file, a huge one), and leaves
	// includes to the vassal runner.
	OneFile bool
	// First, with OneFile, is that config's content, which the caller
	// has read already: it is not read again.
	First []byte
}

// cfgEntry is an option plus the bookkeeping uWSGI keeps per exported option.
type cfgEntry struct {
	Option
	null       bool     // command-line flag without argument: uWSGI stores NULL
	configured bool     // immediate option, already executed: the $ @ % passes skip it
	chain      []string // inherited files this entry came through (loop detection)
}

// cfgLogic is an open logic block (for/if-*): uWSGI keeps exactly one.
type cfgLogic struct {
	_    noCompare
	kind string
	arg  string
}

type cfgParser struct {
	spec      ParseSpec
	filesRead int // files and exec:// outputs read so far
	list      []cfgEntry
	magic     [256]string
	lazy      [256]bool // static magic entries computed on first use
	first     bool      // uWSGI's magic_table_first_round
	lastINI   string    // for "--ini :section"
	loading   []string  // files being loaded right now, for include-loop detection
	chain     []string  // inherit chain of the file being loaded
	logic     *cfgLogic
	running   bool // uWSGI's logic_opt_running: logic bodies add options unfiltered
	strict    bool
	used      map[string]bool // keys read as placeholders or by if-opt
	// Budgets for the whole parse, so no input can make it run for long.
	readBytes  int            // bytes read from files and commands
	expandWork int            // bytes scanned by the substitution passes after a replacement
	firstIdx   map[string]int // key -> index of its first entry, for list[:indexed]
	indexed    int
}

// ParseArgs reads a uWSGI-style command line (without argv[0]) into the
// ordered option list, in uWSGI's order: UWSGI_* environment options, the
// command line with immediate options (config loaders, set, logic) expanded in
// place, trailing config files, then the $(), @() and %() passes, and finally
// inherited files appended unexpanded.
func ParseArgs(args []string, spec ParseSpec) (*Options, error) {
	p, err := newCfgParser(spec)
	if err != nil {
		return nil, err
	}
	if err := p.addEnviron(); err != nil {
		return nil, err
	}
	if err := p.addCommandLine(args); err != nil {
		return nil, err
	}
	if err := p.applyPasses(); err != nil {
		return nil, err
	}
	if err := p.applyInherit(); err != nil {
		return nil, err
	}
	out := p.options()
	if err := p.checkStrict(); err != nil {
		return nil, &ConfigStrictError{Options: out, err: err}
	}
	return out, nil
}

func (p *cfgParser) options() *Options {
	out := &Options{List: make([]Option, len(p.list)), placeholders: p.used}
	for i, e := range p.list {
		out.List[i] = e.Option
		if e.configured && !configImmediate[e.Key] { // set-placeholder's
			if out.placeholders == nil {
				out.placeholders = map[string]bool{}
			}
			out.placeholders[e.Key] = true
		}
	}
	return out
}

// configUnrecognized is the error for a name no option has, with the
// closest name that is one when suggest finds it; where is the file and
// line, "" on the command line.
func configUnrecognized(where, dashes, name string, suggest func(string) string) error {
	msg := "unrecognized option '" + dashes + name + "'"
	if suggest != nil {
		if s := suggest(name); s != "" {
			msg += " (did you mean " + dashes + s + "?)"
		}
	}
	if where != "" {
		msg = where + ": " + msg
	}
	return errors.New(msg)
}

func newCfgParser(spec ParseSpec) (*cfgParser, error) {
	if spec.Cwd == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("getcwd: %w", err)
		}
		spec.Cwd = wd
	}
	p := &cfgParser{spec: spec}
	p.magic['%'] = "%"
	p.magic['('] = "%("
	p.magic['v'] = spec.Cwd
	p.magic['V'] = spec.Version
	now := time.Now()
	p.magic['t'] = strconv.FormatInt(now.Unix(), 10)
	p.magic['T'] = strconv.FormatInt(now.UnixMicro(), 10)
	p.magic['k'] = strconv.Itoa(runtime.NumCPU())
	p.magic['['] = "\x1b"
	p.magic['u'] = strconv.Itoa(os.Getuid())
	p.magic['g'] = strconv.Itoa(os.Getgid())
	// Hostname and user/group names cost a file read each; most configs never use them.
	p.lazy['h'], p.lazy['U'], p.lazy['G'] = true, true, true
	return p, nil
}

// getenv is getenv(3) on the environment the config is read in: the first
// entry for key. A config looks up a few names, if any, so they are found
// by a scan rather than a map built for every parse.
func (p *cfgParser) getenv(key string) (string, bool) {
	for _, kv := range p.spec.Environ {
		if len(kv) > len(key) && kv[len(key)] == '=' && kv[:len(key)] == key {
			return kv[len(key)+1:], true
		}
	}
	return "", false
}

// magicVar returns the magic table entry for c, computing lazy ones once.
func (p *cfgParser) magicVar(c byte) string {
	if !p.lazy[c] {
		return p.magic[c]
	}
	p.lazy[c] = false
	switch c {
	case 'h':
		p.magic['h'], _ = os.Hostname()
	case 'U':
		p.magic['U'] = p.magic['u']
		if name, ok := nameOfID("/etc/passwd", p.magic['u']); ok {
			p.magic['U'] = name
		}
	case 'G':
		p.magic['G'] = p.magic['g']
		if name, ok := nameOfID("/etc/group", p.magic['g']); ok {
			p.magic['G'] = name
		}
	}
	return p.magic[c]
}

// configReservedEnv are UWSGI_* variables uWSGI uses internally, never options.
var configReservedEnv = map[string]bool{
	"UWSGI_RELOADS": true, "UWSGI_VASSALS_DIR": true, "UWSGI_EMPEROR_FD": true,
	"UWSGI_BROODLORD_NUM": true, "UWSGI_EMPEROR_FD_CONFIG": true, "UWSGI_EMPEROR_PROXY": true,
	"UWSGI_JAIL_PID": true, "UWSGI_ORIGINAL_PROC_NAME": true,
}

func (p *cfgParser) addEnviron() error {
	for _, kv := range p.spec.Environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "UWSGI_") || configReservedEnv[k] {
			continue
		}
		name := strings.ReplaceAll(strings.ToLower(k[len("UWSGI_"):]), "_", "-")
		if err := p.add(cfgEntry{Option: Option{Key: name, Value: v, Src: "environment"}}); err != nil {
			return err
		}
	}
	return nil
}

// addCommandLine follows getopt_long with permutation: options are processed
// in order, then the non-option arguments are loaded as config files.
func (p *cfgParser) addCommandLine(args []string) error {
	var trailing []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			trailing = append(trailing, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "--") {
			if strings.HasPrefix(a, "-") && a != "-" {
				entries, used, err := p.shortOptions(a[1:], args[i+1:])
				if err != nil {
					return err
				}
				i += used
				for _, e := range entries {
					if err := p.add(e); err != nil {
						return err
					}
				}
				continue
			}
			trailing = append(trailing, a)
			continue
		}
		e, used, err := p.commandLineOption(a[2:], args[i+1:])
		if err != nil {
			return err
		}
		i += used
		if err := p.add(e); err != nil {
			return err
		}
	}
	for _, t := range trailing {
		if strings.HasPrefix(t, "[") {
			continue
		}
		if err := p.loadByExtension(t, "command line", nil); err != nil {
			return err
		}
	}
	return nil
}

// shortOptions decodes one "-xyz" group as getopt does: flags may be
// grouped, and the first letter that takes an argument takes the rest of
// the group, or else (a required one) the next argument.
func (p *cfgParser) shortOptions(group string, rest []string) ([]cfgEntry, int, error) {
	if p.spec.Short == nil || p.spec.Known == nil {
		return nil, 0, configUnrecognized("", "-", group, nil) // no table of letters
	}
	var out []cfgEntry
	for i := 0; i < len(group); i++ {
		name := p.spec.Short(group[i])
		if name == "" {
			return nil, 0, errors.New("invalid option -- '" + group[i:i+1] + "'")
		}
		if _, isFlag := p.spec.Known(name); isFlag {
			out = append(out, cfgEntry{Option: Option{Key: name, Value: "true", Src: "command line"}, null: true})
			continue
		}
		e := cfgEntry{Option: Option{Key: name, Value: group[i+1:], Src: "command line"}}
		switch {
		case i+1 < len(group):
		case p.spec.Optional != nil && p.spec.Optional(name):
			e.Value, e.null = "true", true
		case len(rest) == 0:
			return nil, 0, errors.New("option requires an argument -- '" + group[i:i+1] + "'")
		default:
			e.Value = rest[0]
			return append(out, e), 1, nil
		}
		return append(out, e), 0, nil
	}
	return out, 0, nil
}

// commandLineOption decodes one "--name[=value]" and reports how many of the
// following arguments it consumed.
func (p *cfgParser) commandLineOption(body string, rest []string) (cfgEntry, int, error) {
	name, value, hasValue := strings.Cut(body, "=")
	known, isFlag := true, false
	if p.spec.Known != nil {
		known, isFlag = p.spec.Known(name)
	} else if !hasValue {
		// Without a table, a following argument that is not an option is the value.
		isFlag = len(rest) == 0 || strings.HasPrefix(rest[0], "--")
	}
	if known && !hasValue && p.spec.Optional != nil && p.spec.Optional(name) {
		isFlag = true // only "--name=v" gives an optional argument
	}
	e := cfgEntry{Option: Option{Key: name, Src: "command line"}}
	switch {
	case !known || name == "":
		return e, 0, configUnrecognized("", "--", name, p.spec.Suggest)
	case isFlag && hasValue && p.spec.Known != nil:
		return e, 0, fmt.Errorf("option '--%s' doesn't allow an argument", name)
	case isFlag:
		e.Value, e.null = "true", true // uWSGI shows a NULL value as "true"
		return e, 0, nil
	case hasValue:
		e.Value = value
		return e, 0, nil
	case len(rest) == 0:
		return e, 0, fmt.Errorf("option '--%s' requires an argument", name)
	}
	e.Value = rest[0]
	return e, 1, nil
}

// configEndKeys close the open logic block ("end" is not even an option).
var configEndKeys = map[string]bool{"end": true, "endif": true, "end-if": true, "endfor": true, "end-for": true}

// configImmediate lists uWSGI 2.0's UWSGI_OPT_IMMEDIATE options: they run while
// the list is being built and are skipped by the $ @ % passes.
var configImmediate = configSet(
	"xmlconfig", "xml", "config", "fallback-config", "strict", "set", "set-placeholder", "set-ph",
	"declare-option", "resolve", "for", "for-glob", "for-times", "for-readline", "endfor", "end-for",
	"if-opt", "if-not-opt", "if-env", "if-not-env", "ifenv", "if-reload", "if-not-reload",
	"if-hostname", "if-not-hostname", "if-hostname-match", "if-not-hostname-match",
	"if-exists", "if-not-exists", "ifexists", "if-plugin", "if-not-plugin", "ifplugin",
	"if-file", "if-not-file", "if-dir", "if-not-dir", "ifdir", "if-directory", "endif", "end-if",
	"blacklist", "end-blacklist", "whitelist", "end-whitelist", "include", "inject-before",
	"inject-after", "stop", "reload", "pause", "suspend", "resume", "connect-and-read", "extract",
	"listen", "umask", "help", "usage", "print-sym", "print-symbol", "spooler-processes", "signal",
	"flock", "flock-wait", "flock2", "flock-wait2", "immediate-uid", "immediate-gid", "ini", "yaml",
	"yml", "json", "js", "command-mode", "pcre-jit", "early-envdir", "plugins", "plugin",
	"need-plugins", "need-plugin", "plugins-dir", "plugin-dir", "autoload", "dlopen",
	"binary-append-data", "iprint", "exit", "cflags", "dot-h", "config-py", "build-plugin",
)

// configLanguage are the options this parser carries out itself: the
// config loaders, set, strict and the logic blocks.
var configLanguage = configSet("ini", "xml", "xmlconfig", "yaml", "yml", "json", "js", "config",
	"include", "inherit", "set", "set-placeholder", "set-ph", "strict", "for", "for-glob", "for-times",
	"for-readline", "endfor", "end-for", "if-opt", "if-not-opt", "if-env", "if-not-env", "ifenv",
	"if-reload", "if-not-reload", "if-hostname", "if-not-hostname", "if-exists", "if-not-exists",
	"ifexists", "if-plugin", "if-not-plugin", "ifplugin", "if-file", "if-not-file", "if-dir",
	"if-not-dir", "ifdir", "if-directory", "if-hostname-match", "if-not-hostname-match", "endif", "end-if")

func configSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// add is uWSGI's add_exported_option: route through an open logic block,
// append, and execute immediate options at once.
func (p *cfgParser) add(e cfgEntry) error {
	if !p.running {
		if configEndKeys[e.Key] {
			p.logic = nil
		} else if p.logic != nil {
			return p.runLogic(e)
		}
	}
	if len(p.list) >= configMaxOptions {
		return fmt.Errorf("%s: too many options (more than %d)", e.Src, configMaxOptions)
	}
	if e.chain == nil {
		e.chain = p.chain
	}
	if configImmediate[e.Key] {
		e.configured = true
	}
	p.list = append(p.list, e)
	if e.configured {
		return p.immediate(len(p.list) - 1)
	}
	return nil
}

// immediate executes the immediate option at index i of the list.
func (p *cfgParser) immediate(i int) error {
	e := p.list[i]
	switch e.Key {
	case "ini", "xml", "xmlconfig", "yaml", "yml", "json", "js", "config":
		return p.loadOption(i)
	case "include":
		return p.loadByExtension(e.Value, e.Src, e.chain)
	case "set", "set-placeholder", "set-ph":
		return p.set(e, e.Key != "set")
	case "strict":
		p.strict = e.null || configTrue(e.Value)
	case "for", "for-glob", "for-times", "for-readline", "if-opt", "if-not-opt", "if-env",
		"if-not-env", "ifenv", "if-reload", "if-not-reload", "if-hostname", "if-not-hostname",
		"if-exists", "if-not-exists", "ifexists", "if-plugin", "if-not-plugin", "ifplugin",
		"if-file", "if-not-file", "if-dir", "if-not-dir", "ifdir", "if-directory",
		"if-hostname-match", "if-not-hostname-match":
		if p.logic != nil {
			return fmt.Errorf("%s: recursive logic in options is not supported (option = %s)", e.Src, e.Key)
		}
		p.logic = &cfgLogic{kind: e.Key, arg: e.Value}
	}
	return nil
}

// set implements --set k=v (also a real option when k is one) and
// --set-placeholder (a placeholder only, refusing real option names).
func (p *cfgParser) set(e cfgEntry, placeholderOnly bool) error {
	k, v, ok := strings.Cut(e.Value, "=")
	if !ok {
		return fmt.Errorf("%s: invalid placeholder/--set value %q (missing '=')", e.Src, e.Value)
	}
	ne := cfgEntry{Option: Option{Key: k, Value: v, Src: e.Src}, chain: e.chain}
	if !placeholderOnly {
		return p.add(ne)
	}
	if p.spec.Known != nil {
		if known, _ := p.spec.Known(k); known {
			return fmt.Errorf("%s: you cannot use %s as a placeholder, it is already available as an option", e.Src, k)
		}
	}
	// add_exported_option_do(..., placeholder_only) bypasses logic and is never executed.
	ne.configured = true
	p.list = append(p.list, ne)
	return nil
}

// lookup is uwsgi_get_exported_opt: the first entry with that key; a NULL
// value (command-line flag) counts as absent.
func (p *cfgParser) lookup(key string) (string, bool) {
	if p.used == nil {
		p.used = map[string]bool{}
	}
	p.used[key] = true
	if i := p.lookupIndex(key); i >= 0 {
		return p.list[i].Value, !p.list[i].null
	}
	return "", false
}

// lookupIndex finds the first entry with key. Entries are only ever appended,
// so an index of first occurrences extended on demand stays valid and keeps
// placeholder-heavy configs linear.
func (p *cfgParser) lookupIndex(key string) int {
	if p.firstIdx == nil {
		p.firstIdx = make(map[string]int)
	}
	for ; p.indexed < len(p.list); p.indexed++ {
		if _, seen := p.firstIdx[p.list[p.indexed].Key]; !seen {
			p.firstIdx[p.list[p.indexed].Key] = p.indexed
		}
	}
	if i, ok := p.firstIdx[key]; ok {
		return i
	}
	return -1
}

func (p *cfgParser) checkStrict() error {
	if !p.strict || p.spec.Known == nil {
		return nil
	}
	for _, e := range p.list {
		if e.configured { // set-placeholder values are the sanctioned placeholders
			continue
		}
		if known, _ := p.spec.Known(e.Key); !known {
			return fmt.Errorf("%s: [strict-mode] unknown config directive: %s", e.Src, e.Key)
		}
	}
	return nil
}

// runLogic feeds one option through the open logic block, like the
// uwsgi_logic_opt_* functions: the option is added zero or more times, with
// "%(_)" replaced by the loop item or the tested value.
func (p *cfgParser) runLogic(e cfgEntry) error {
	p.running = true
	defer func() { p.running = false }()
	emit := func(with string) error {
		ne := e
		ne.Value = strings.ReplaceAll(e.Value, "%(_)", with)
		return p.add(ne)
	}
	items, err := p.logicItems(p.logic, e.Src)
	if err != nil {
		return err
	}
	for _, it := range items {
		if it.raw {
			err = p.add(e)
		} else {
			err = emit(it.with)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// cfgLogicItem is one emission of the body option; raw means "%(_)" is not
// replaced (uWSGI passes NULL to uwsgi_substitute, or does not call it).
type cfgLogicItem struct {
	_    noCompare
	with string
	raw  bool
}

func (p *cfgParser) logicItems(l *cfgLogic, src string) ([]cfgLogicItem, error) {
	arg := l.arg
	one := func(cond bool, with string) []cfgLogicItem {
		if !cond {
			return nil
		}
		return []cfgLogicItem{{with: with}}
	}
	switch l.kind {
	case "for":
		var out []cfgLogicItem
		for _, tok := range strings.Split(arg, " ") {
			if tok != "" {
				out = append(out, cfgLogicItem{with: tok})
			}
		}
		return out, nil
	case "for-times":
		var out []cfgLogicItem
		for i := int64(1); i <= configAtoi(arg) && i <= configMaxOptions; i++ {
			out = append(out, cfgLogicItem{with: strconv.FormatInt(i, 10)})
		}
		return out, nil
	case "for-glob":
		return p.globItems(arg), nil
	case "for-readline":
		return p.readlineItems(arg, src)
	case "if-opt", "if-not-opt":
		name, want, hasWant := strings.Cut(arg, "=")
		v, ok := p.lookup(name)
		return p.ifValue(l.kind == "if-opt", v, ok, want, hasWant), nil
	case "if-env", "ifenv", "if-not-env":
		name, want, hasWant := strings.Cut(arg, "=")
		v, ok := p.getenv(name)
		return p.ifValue(l.kind != "if-not-env", v, ok, want, hasWant), nil
	case "if-reload", "if-not-reload":
		_, reload := p.getenv("UWSGI_RELOADS")
		if reload == (l.kind == "if-reload") {
			return []cfgLogicItem{{raw: true}}, nil
		}
		return nil, nil
	case "if-hostname", "if-not-hostname":
		return one((p.magicVar('h') == arg) == (l.kind == "if-hostname"), arg), nil
	case "if-hostname-match", "if-not-hostname-match":
		return one(configRegexpMatch(arg, p.magicVar('h')) == (l.kind == "if-hostname-match"), arg), nil
	case "if-exists", "ifexists", "if-not-exists":
		_, err := os.Stat(p.abs(arg))
		return one((err == nil) == (l.kind != "if-not-exists"), arg), nil
	case "if-file", "if-not-file":
		st, err := os.Stat(p.abs(arg))
		return one((err == nil && st.Mode().IsRegular()) == (l.kind == "if-file"), arg), nil
	case "if-dir", "ifdir", "if-directory", "if-not-dir":
		st, err := os.Stat(p.abs(arg))
		return one((err == nil && st.IsDir()) == (l.kind != "if-not-dir"), arg), nil
	case "if-plugin", "ifplugin":
		return nil, nil // no uWSGI plugins are ever loaded here
	case "if-not-plugin":
		return one(true, arg), nil
	}
	return nil, nil
}

// ifValue implements the "name" / "name=value" tests of if-opt and if-env.
// The negated forms pass a NULL value to the substitution when the name is absent.
func (p *cfgParser) ifValue(positive bool, v string, ok bool, want string, hasWant bool) []cfgLogicItem {
	matches := ok && (!hasWant || v == want)
	if positive {
		if matches {
			return []cfgLogicItem{{with: v}}
		}
		return nil
	}
	if matches {
		return nil
	}
	if !ok {
		return []cfgLogicItem{{raw: true}}
	}
	return []cfgLogicItem{{with: v}}
}

// globItems mirrors glob(GLOB_MARK|GLOB_NOCHECK): directories get a trailing
// '/', and a pattern matching nothing yields itself.
func (p *cfgParser) globItems(pattern string) []cfgLogicItem {
	matches, err := filepath.Glob(p.abs(pattern))
	if err != nil || len(matches) == 0 {
		return []cfgLogicItem{{with: pattern}}
	}
	out := make([]cfgLogicItem, 0, len(matches))
	for _, m := range matches {
		if !filepath.IsAbs(pattern) {
			if rel, err := filepath.Rel(p.spec.Cwd, m); err == nil {
				m = rel
			}
		}
		if st, err := os.Stat(p.abs(m)); err == nil && st.IsDir() {
			m += "/"
		}
		out = append(out, cfgLogicItem{with: m})
	}
	return out
}

func (p *cfgParser) readlineItems(path, src string) ([]cfgLogicItem, error) {
	data, err := p.readConfig(path)
	if err != nil {
		return nil, fmt.Errorf("%s: for-readline: %w", src, err)
	}
	var out []cfgLogicItem
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		out = append(out, cfgLogicItem{with: line})
	}
	return out, nil
}

// abs resolves a path against the startup cwd, as uWSGI does by never having
// changed directory while parsing.
func (p *cfgParser) abs(path string) string {
	if filepath.IsAbs(path) || path == "" {
		return path
	}
	return filepath.Join(p.spec.Cwd, path)
}

// configOptionKind maps the loader options to the format they force; "config"
// goes by extension.
var configOptionKind = map[string]string{
	"ini": "ini", "xml": "xml", "xmlconfig": "xml", "yaml": "yaml", "yml": "yaml",
	"json": "json", "js": "json", "config": "",
}

// configFormats are the config languages uWSGI reads, by file suffix. The
// kind is also the loader option such a file is passed with (--ini FILE).
var configFormats = []struct{ suffix, kind string }{
	{".ini", "ini"}, {".xml", "xml"}, {".yaml", "yaml"}, {".yml", "yaml"}, {".json", "json"}, {".js", "json"},
}

// configKindByExt is uwsgi_opt_load's extension test. It looks at the file
// part only, so "include = x.ini:sec" works (uWSGI tests the whole argument
// and fails on it).
func configKindByExt(file string) string {
	for _, f := range configFormats {
		if strings.HasSuffix(file, f.suffix) {
			return f.kind
		}
	}
	return ""
}

// configSchemes are uWSGI's config URL schemes; only exec:// is supported.
var configSchemes = []string{"exec://", "http://", "https://", "emperor://", "fd://", "data://",
	"sym://", "section://", "call://", "callint://"}

func configScheme(arg string) string {
	for _, s := range configSchemes {
		if strings.HasPrefix(arg, s) {
			return s
		}
	}
	return ""
}

// configSplitSection splits "file:section" at the last ':' (for a scheme
// argument, the last ':' after the last '/').
func configSplitSection(arg string) (file, section string, has bool) {
	from := 0
	if configScheme(arg) != "" {
		from = strings.LastIndexByte(arg, '/') + 1
	}
	i := strings.LastIndexByte(arg[from:], ':')
	if i < 0 {
		return arg, "", false
	}
	return arg[:from+i], arg[from+i+1:], true
}

// loadOption executes a loader option (ini, xml, json, yaml, config) at index i.
func (p *cfgParser) loadOption(i int) error {
	e := p.list[i]
	kind := configOptionKind[e.Key]
	file, _, hasSection := configSplitSection(e.Value)
	if kind == "" {
		if kind = configKindByExt(file); kind == "" {
			return fmt.Errorf("%s: unable to load configuration from %s", e.Src, e.Value)
		}
	}
	if err := p.load(e.Value, kind, e.Src, e.chain); err != nil {
		return err
	}
	if hasSection && (e.Key == "xml" || e.Key == "xmlconfig" || e.Key == "json" || e.Key == "js") {
		// uWSGI's XML and JSON loaders cut their argument at the ':' in place and
		// never restore it, so uWSGI's list (and --show-config) keeps the bare file.
		p.list[i].Value = file
	}
	return nil
}

// loadByExtension is uwsgi_opt_load (include, inherit, trailing arguments):
// format by extension, and the uppercase magic variables are left alone.
func (p *cfgParser) loadByExtension(arg, src string, chain []string) error {
	file, _, _ := configSplitSection(arg)
	kind := configKindByExt(file)
	if kind == "" {
		return fmt.Errorf("%s: unable to load configuration from %s", src, arg)
	}
	saved := p.first
	p.first = true
	err := p.load(arg, kind, src, chain)
	p.first = saved
	return err
}

// load reads, magic-substitutes and parses one config argument and adds its
// options at the current position of the list.
func (p *cfgParser) load(arg, kind, src string, chain []string) error {
	file, section, has := configSplitSection(arg)
	if kind == "ini" && strings.HasPrefix(arg, ":") {
		if p.lastINI == "" {
			return fmt.Errorf("%s: %s: no previous INI file to take section %q from", src, arg, section)
		}
		file = p.lastINI
	}
	if kind == "xml" && has && section == "" {
		return fmt.Errorf("%s: invalid xml id in %s", src, arg)
	}
	if len(p.loading) >= configMaxNesting || len(chain) >= configMaxNesting {
		return fmt.Errorf("%s: config files nested too deeply (more than %d) loading %s", src, configMaxNesting, arg)
	}
	firstRound := !p.first
	if err := p.fillMagic(arg); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	// %p names the file (a symlink stays unresolved: a loop through several
	// link names then ends at configMaxNesting instead).
	id := file
	if configScheme(file) == "" {
		id = p.magic['p']
	}
	id += "\x00" + kind + ":" + section
	for _, l := range p.loading {
		if l == id {
			return fmt.Errorf("%s: include loop: %s is already being loaded", src, arg)
		}
	}
	data, err := p.readConfig(file)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if kind == "ini" {
		p.lastINI = file
	}
	opts, err := p.parseData(kind, file, data, section)
	if err != nil {
		return err
	}
	if firstRound && (kind == "ini" || kind == "yaml") {
		// %O aliases the first argument; the INI and YAML loaders put its ':'
		// back once the file is read, so later files see the section too.
		p.magic['O'] = arg
	}
	p.loading = append(p.loading, id)
	savedChain := p.chain
	p.chain = chain
	defer func() { p.loading, p.chain = p.loading[:len(p.loading)-1], savedChain }()
	for _, op := range opts {
		if err := p.add(cfgEntry{Option: op}); err != nil {
			return err
		}
	}
	return nil
}

// parseData applies the magic variables to the raw text, as uWSGI does when
// it reads a file, then runs the format's parser.
func (p *cfgParser) parseData(kind, name string, data []byte, section string) ([]Option, error) {
	t := &cfgText{name: name}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		t.data = data
		return nil, t.errorf(i, "binary data (NUL byte) in config file")
	}
	// INI, JSON and YAML are read with a terminating NUL that is part of the
	// substituted text, so a '%' as the very last byte is eaten; XML is not.
	var err error
	t.data, t.eaten, err = p.magicSub(data, kind != "xml")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	opts, err := configParseText(kind, t, section)
	if err == nil && kind == "ini" && len(opts) == 0 {
		if section == "" {
			section = "uwsgi"
		}
		configWarn(fmt.Sprintf("*** WARNING: Can't find section \"%s\" in INI configuration file %s ***", section, name))
	}
	return opts, err
}

// configParseText runs the parser of one format on already magic-substituted
// text: the options of the asked section ("" = "uwsgi"; for XML, the id asked
// after ':', "" = any).
func configParseText(kind string, t *cfgText, section string) ([]Option, error) {
	switch kind {
	case "ini":
		return configParseINIText(t, section)
	case "json":
		return configParseJSONText(t, section)
	case "xml":
		return configParseXMLText(t, section)
	case "yaml":
		return configParseYAMLText(t, section)
	}
	return nil, fmt.Errorf("%s: unknown config format %q", t.name, kind)
}

// fileID names a config file for loop detection.
func (p *cfgParser) fileID(file string) string {
	if configScheme(file) != "" {
		return file
	}
	if r, err := filepath.EvalSymlinks(p.abs(file)); err == nil {
		return r
	}
	return p.abs(file)
}

// readConfig reads a config file or exec:// output, bounded in size, and
// charges it to the whole parse's budget (a for loop can include a big file
// many times).
func (p *cfgParser) readConfig(file string) ([]byte, error) {
	if p.filesRead++; p.spec.OneFile && p.filesRead > 1 {
		return nil, configUnsupported(fmt.Errorf("%s: an include (left to the vassal runner)", file))
	}
	if p.spec.OneFile && p.spec.First != nil && configScheme(file) == "" && file != "-" {
		p.readBytes += len(p.spec.First)
		return p.spec.First, nil
	}
	data, err := p.readConfigOnce(file)
	if p.readBytes += len(data); p.readBytes > configMaxTotalRead {
		return nil, fmt.Errorf("%s: more than %d MiB of configuration read in total", file, configMaxTotalRead>>20)
	}
	return data, err
}

func (p *cfgParser) readConfigOnce(file string) ([]byte, error) {
	switch s := configScheme(file); {
	case s == "exec://" && !configNoExec.Load():
		return p.execOutput(file[len(s):])
	case s != "":
		return nil, configUnsupported(fmt.Errorf("%s: the %s scheme is not supported", file, strings.TrimSuffix(s, "://")))
	case file == "-":
		return nil, configUnsupported(errors.New("reading a config from standard input is not supported"))
	}
	return configReadFile(p.abs(file))
}

// configReadFile reads a regular file of at most configMaxFileSize bytes.
// Non-regular files are refused so a FIFO or device can never block the parse.
func configReadFile(path string) ([]byte, error) { return readRegularFile(path, configMaxFileSize) }

// readRegularFile reads a regular file of at most max bytes without ever
// blocking on what a file's owner controls: the open is non-blocking (a
// FIFO swapped in opens at once, and a file under a lease fails with
// EWOULDBLOCK instead of waiting out the lease break), the type is checked
// on the open descriptor, and the size cap is checked while reading (a
// /proc file says size 0 and never ends; a sparse file lies the other way).
func readRegularFile(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := configCheckFile(path, st, max); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: file too large (grew past the %d KiB limit while reading)", path, max>>10)
	}
	return data, nil
}

func configCheckFile(path string, st os.FileInfo, max int64) error {
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file (%s)", path, st.Mode().Type())
	}
	if st.Size() > max {
		return fmt.Errorf("%s: file too large (%d bytes, the limit is %d KiB)", path, st.Size(), max>>10)
	}
	return nil
}

// execOutput runs an exec:// command through /bin/sh like uWSGI, with bounded
// output and a time limit so a stuck command cannot hang the parse.
func (p *cfgParser) execOutput(cmdline string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), configExecTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
	cmd.Dir = p.spec.Cwd
	cmd.Env = p.spec.Environ
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("exec://%s: %w", cmdline, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec://%s: %w", cmdline, err)
	}
	data, rerr := io.ReadAll(io.LimitReader(out, configMaxFileSize+1))
	if len(data) > configMaxFileSize {
		_ = cmd.Process.Kill()
	}
	werr := cmd.Wait()
	switch {
	case len(data) > configMaxFileSize:
		return nil, fmt.Errorf("exec://%s: output larger than %d MiB", cmdline, configMaxFileSize>>20)
	case rerr != nil:
		return nil, fmt.Errorf("exec://%s: %w", cmdline, rerr)
	case werr != nil:
		return nil, fmt.Errorf("exec://%s: %w", cmdline, werr)
	}
	return data, nil
}

// fillMagic is config_magic_table_fill: set the per-file magic variables for
// the config argument about to be read, and the uppercase copies on the first
// load of the run.
func (p *cfgParser) fillMagic(arg string) error {
	// uWSGI's %o aliases the argument, which the loaders cut at the section
	// ':' while the file is read: what the text sees is the file part.
	p.magic['o'], _, _ = configSplitSection(arg)
	if configScheme(arg) != "" || arg == "-" {
		return nil // scheme arguments only update %o
	}
	file, section, reuse := arg, "", false
	if i := strings.LastIndexByte(arg, ':'); i >= 0 {
		file, section, reuse = arg[:i], arg[i+1:], i == 0
	}
	if !reuse { // ":section" keeps the previous file's entries
		full, err := p.magicPath(file)
		if err != nil {
			return err
		}
		p.setPathMagic(full)
	}
	p.magic['x'] = section
	if !p.first {
		for _, c := range "odspcenxij" {
			p.magic[c-'a'+'A'] = p.magic[c]
		}
		p.first = true
	}
	return nil
}

// magicPath is %p: the real path, except that a symlink is not resolved (its
// own name is what tells skeleton-linked vassals apart).
func (p *cfgParser) magicPath(file string) (string, error) {
	if st, err := os.Lstat(p.abs(file)); err == nil && st.Mode()&os.ModeSymlink != 0 {
		if strings.HasPrefix(file, "/") {
			return file, nil
		}
		return p.spec.Cwd + "/" + file, nil // uWSGI does not clean "./" away
	}
	full, err := filepath.EvalSymlinks(p.abs(file))
	if err != nil {
		return "", fmt.Errorf("realpath() of %s failed: %w", file, configUnwrapPath(err))
	}
	return full, nil
}

// configUnwrapPath drops the path an *os.PathError repeats.
func configUnwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (p *cfgParser) setPathMagic(full string) {
	m := &p.magic
	m['b'] = p.spec.BinaryPath
	m['p'] = full
	m['j'] = configDJB33x(full)
	if st, err := os.Lstat(full); err == nil {
		if ino, ok := configInode(st); ok {
			m['i'] = strconv.FormatUint(ino, 10)
		}
	}
	slash := strings.LastIndexByte(full, '/')
	m['s'] = full[slash+1:]
	m['d'] = full[:slash+1]
	dir := strings.TrimSuffix(m['d'], "/")
	m['c'] = ""
	if i := strings.LastIndexByte(dir, '/'); i >= 0 {
		m['c'] = dir[i+1:]
	}
	n := 0
	for _, part := range strings.Split(dir, "/") {
		if part != "" && n < 10 {
			m['0'+n] = part
			n++
		}
	}
	for ; n < 10; n++ {
		m['0'+n] = ""
	}
	m['e'], m['n'] = "", m['s']
	if dot := strings.LastIndexByte(m['s'], '.'); dot >= 0 {
		m['e'], m['n'] = m['s'][dot+1:], m['s'][:dot]
	}
}

// configDJB33x is %j: uWSGI's djb33x hash of the path, printed as the hex of
// its little-endian bytes. C's char is signed, so high bytes are sign-extended.
func configDJB33x(s string) string {
	h := uint32(5381)
	for i := 0; i < len(s); i++ {
		h = (h<<5 + h) ^ uint32(int32(int8(s[i])))
	}
	return fmt.Sprintf("%02X%02X%02X%02X", byte(h), byte(h>>8), byte(h>>16), byte(h>>24))
}

// magicSub replaces every "%c" pair in one left-to-right pass (results are not
// rescanned). It reports where a "%\n" swallowed a newline so that line numbers
// in messages still point at the physical lines.
func (p *cfgParser) magicSub(data []byte, eofEats bool) ([]byte, []int, error) {
	if bytes.IndexByte(data, '%') < 0 {
		return data, nil, nil
	}
	out := make([]byte, 0, len(data)+64)
	var eaten []int
	for i := 0; i < len(data); i++ {
		if data[i] != '%' {
			out = append(out, data[i])
			continue
		}
		if i+1 == len(data) {
			if !eofEats {
				out = append(out, '%')
			}
			break
		}
		if data[i+1] == '\n' {
			eaten = append(eaten, len(out))
		}
		out = append(out, p.magicVar(data[i+1])...)
		i++
		if len(out) > 2*configMaxFileSize {
			return nil, nil, fmt.Errorf("config larger than %d MiB after magic variable substitution", 2*configMaxFileSize>>20)
		}
	}
	return out, eaten, nil
}

// cfgText is a magic-substituted config text with what is needed to turn a
// byte offset into "name:line".
type cfgText struct {
	name     string
	data     []byte
	eaten    []int // offsets where a newline was swallowed by "%\n"
	lastOff  int   // line-count cache: parsers move forward
	lastLine int   // newlines before lastOff
}

func (t *cfgText) line(off int) int {
	if off > len(t.data) {
		off = len(t.data)
	}
	if off < t.lastOff {
		t.lastOff, t.lastLine = 0, 0
	}
	t.lastLine += bytes.Count(t.data[t.lastOff:off], []byte{'\n'})
	t.lastOff = off
	n := t.lastLine + 1
	for _, e := range t.eaten {
		if e > off {
			break
		}
		n++
	}
	return n
}

func (t *cfgText) src(off int) string { return t.name + ":" + strconv.Itoa(t.line(off)) }

// errorf builds the one-line "name:line: message" error.
// ConfigUnsupportedError is a config this parser refuses although uWSGI
// may read it (a scheme, a YAML or XML form it does not implement): the
// vassal runner hands such a config to a real uWSGI.
type ConfigUnsupportedError struct{ err error }

// ConfigStrictError is strict mode refusing a key no option has; Options
// is the list as parsed, for a caller that leaves strict mode to uWSGI.
type ConfigStrictError struct {
	Options *Options
	err     error
}

func (e *ConfigStrictError) Error() string { return e.err.Error() }

func (e *ConfigUnsupportedError) Error() string { return e.err.Error() }
func (e *ConfigUnsupportedError) Unwrap() error { return e.err }

func configUnsupported(err error) error { return &ConfigUnsupportedError{err} }

func (t *cfgText) errorf(off int, format string, a ...any) error {
	msg := escapeBytes(fmt.Sprintf(format, a...), "\n\r", `\n`, `\r`)
	return fmt.Errorf("%s: %s", t.src(off), msg)
}

// configInode reads st_ino without naming syscall.Stat_t, which not every
// platform has.
func configInode(st os.FileInfo) (uint64, bool) {
	v := reflect.ValueOf(st.Sys())
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return 0, false
	}
	f := v.FieldByName("Ino")
	if f.IsValid() && f.CanUint() {
		return f.Uint(), true
	}
	return 0, false
}

// configRegexpMatch reports whether pattern, a Perl-compatible regular
// expression as uWSGI hands it to PCRE for if-hostname-match, matches
// somewhere in s. An invalid pattern, or one beyond the subset below,
// matches nothing.
func configRegexpMatch(pattern, s string) bool {
	prog, err := configCompileRegexp(pattern)
	return err == nil && prog.match(s)
}

// The regular expressions are PCRE's syntax without its extensions, on
// bytes (a hostname is ASCII): literals and \-escaped punctuation, . [...]
// [^...] with ranges and [:alpha:]-style classes, \d \w \s \D \W \S, \n \t
// \r \f \e \a \xHH, ^ $ \A \z \Z \b \B, ( ) (?: ) |, * + ? {n} {n,} {n,m}
// and their lazy forms (which match the same strings), the options i
// (caseless), m (multiline) and s (dot matches newline) as (?ims-ims) for
// the rest of the group and (?ims-ims:...). Backreferences, lookaround,
// possessive quantifiers, other options, \Q..\E, \p and \v \h are
// errors. Matching runs a Thompson NFA (a Pike VM without captures): time
// is linear in the subject whatever the pattern, and these limits bound the
// program a pattern can make.
const (
	configRegexpMaxRepeat = 1000  // the largest count in {n,m}, as RE2's
	configRegexpMaxProg   = 10000 // instructions: a{1000}{1000} is refused
	configRegexpMaxDepth  = 200   // nested groups
)

// reSet is a set of bytes.
type reSet [4]uint64

func (s *reSet) add(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		s[c>>6] |= 1 << (c & 63)
	}
}

func (s *reSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }

func (s *reSet) union(t *reSet) {
	for i := range s {
		s[i] |= t[i]
	}
}

func (s *reSet) invert() {
	for i := range s {
		s[i] = ^s[i]
	}
}

// fold adds the other case of every ASCII letter in s.
func (s *reSet) fold() {
	for c := byte('a'); c <= 'z'; c++ {
		if s.has(c) || s.has(c-'a'+'A') {
			s.add(c, c)
			s.add(c-'a'+'A', c-'a'+'A')
		}
	}
}

// reNode is a parsed pattern: kind 'c' a byte of set, 'a' the assertion
// op, '.' the concatenation of subs, '|' the alternation of subs, '*' sub
// repeated min to max times (max -1: unbounded).
type reNode struct {
	kind     byte
	set      reSet
	op       byte
	subs     []*reNode
	min, max int
}

type reParser struct {
	src   string
	pos   int
	depth int
	// The options in force: i caseless, m ^ and $ at line ends too, s a
	// dot matches a newline.
	caseless, multiline, dotall bool
}

func (p *reParser) errorf(format string, a ...any) error {
	return fmt.Errorf("regexp %q at %d: %s", p.src, p.pos, fmt.Sprintf(format, a...))
}

func (p *reParser) peek(c byte) bool { return p.pos < len(p.src) && p.src[p.pos] == c }

func (p *reParser) alternation() (*reNode, error) {
	n := &reNode{kind: '|'}
	for {
		seq, err := p.sequence()
		if err != nil {
			return nil, err
		}
		n.subs = append(n.subs, seq)
		if !p.peek('|') {
			return n, nil
		}
		p.pos++
	}
}

func (p *reParser) sequence() (*reNode, error) {
	n := &reNode{kind: '.'}
	for p.pos < len(p.src) && !p.peek('|') && !p.peek(')') {
		atom, err := p.atom()
		if err != nil {
			return nil, err
		}
		if min, max, ok, err := p.quantifier(); err != nil {
			return nil, err
		} else if ok {
			if atom.kind == 'a' {
				return nil, p.errorf("quantified assertion")
			}
			switch {
			case p.peek('?'): // lazy: the same strings match
				p.pos++
			case p.peek('+'):
				return nil, p.errorf("possessive quantifiers are not supported")
			}
			atom = &reNode{kind: '*', subs: []*reNode{atom}, min: min, max: max}
		}
		n.subs = append(n.subs, atom)
	}
	return n, nil
}

// quantifier reads * + ? {n} {n,} {n,m}; a brace that starts none of
// these is a literal, as in PCRE.
func (p *reParser) quantifier() (min, max int, ok bool, err error) {
	if p.pos >= len(p.src) {
		return 0, 0, false, nil
	}
	switch p.src[p.pos] {
	case '*':
		p.pos++
		return 0, -1, true, nil
	case '+':
		p.pos++
		return 1, -1, true, nil
	case '?':
		p.pos++
		return 0, 1, true, nil
	case '{':
	default:
		return 0, 0, false, nil
	}
	end := strings.IndexByte(p.src[p.pos:], '}')
	if end < 0 {
		return 0, 0, false, nil
	}
	lo, hi, comma := strings.Cut(p.src[p.pos+1:p.pos+end], ",")
	min, err1 := strconv.Atoi(lo)
	max, err2 := min, error(nil)
	if comma {
		max, err2 = -1, nil
		if hi != "" {
			max, err2 = strconv.Atoi(hi)
		}
	}
	if err1 != nil || err2 != nil || lo[0] == '+' || lo[0] == '-' || hi != "" && (hi[0] == '+' || hi[0] == '-') {
		return 0, 0, false, nil
	}
	p.pos += end + 1
	switch {
	case min > configRegexpMaxRepeat || max > configRegexpMaxRepeat:
		return 0, 0, false, p.errorf("repeat count over %d", configRegexpMaxRepeat)
	case max >= 0 && max < min:
		return 0, 0, false, p.errorf("numbers out of order in {} quantifier")
	}
	return min, max, true, nil
}

func (p *reParser) atom() (*reNode, error) {
	c := p.src[p.pos]
	p.pos++
	n := &reNode{kind: 'c'}
	switch c {
	case '(':
		if p.depth++; p.depth > configRegexpMaxDepth {
			return nil, p.errorf("groups nested deeper than %d", configRegexpMaxDepth)
		}
		// Options set inside a group end with it.
		saved := [3]bool{p.caseless, p.multiline, p.dotall}
		defer func() { p.caseless, p.multiline, p.dotall = saved[0], saved[1], saved[2] }()
		if p.peek('?') {
			p.pos++
			alone, err := p.options()
			if err != nil {
				return nil, err
			}
			if alone { // (?ims): for the rest of the enclosing group
				saved = [3]bool{p.caseless, p.multiline, p.dotall}
				p.depth--
				return &reNode{kind: '.'}, nil
			}
		} else if p.peek('*') {
			return nil, p.errorf("(* is not supported")
		}
		sub, err := p.alternation()
		if err != nil {
			return nil, err
		}
		if !p.peek(')') {
			return nil, p.errorf("missing )")
		}
		p.pos++
		p.depth--
		return sub, nil
	case '[':
		return n, p.class(&n.set)
	case '.':
		n.set.add(0, 255)
		if !p.dotall {
			n.set[0] &^= 1 << '\n'
		}
	case '^', '$':
		if p.multiline {
			c = map[byte]byte{'^': 'L', '$': 'E'}[c]
		}
		return &reNode{kind: 'a', op: c}, nil
	case '\\':
		op, err := p.escape(&n.set, false)
		if op != 0 {
			return &reNode{kind: 'a', op: op}, err
		}
		if p.caseless {
			n.set.fold()
		}
		return n, err
	case '*', '+', '?':
		return nil, p.errorf("nothing to repeat")
	case '{':
		p.pos--
		if _, _, ok, _ := p.quantifier(); ok {
			return nil, p.errorf("nothing to repeat")
		}
		p.pos++
		n.set.add(c, c)
	default:
		n.set.add(c, c)
	}
	if p.caseless {
		n.set.fold()
	}
	return n, nil
}

// options reads the letters after "(?": i m s, a - before those to turn
// off, then ")" (they hold for the rest of the enclosing group: alone is
// true) or ":" (a group of its own follows, under them).
func (p *reParser) options() (alone bool, err error) {
	on := true
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		p.pos++
		switch c {
		case 'i':
			p.caseless = on
		case 'm':
			p.multiline = on
		case 's':
			p.dotall = on
		case '-':
			on = false
		case ')':
			return true, nil
		case ':':
			return false, nil
		default:
			return false, p.errorf("(?%c is not supported", c)
		}
	}
	return false, p.errorf("missing )")
}

// escape reads what follows a backslash into set, or returns the
// assertion it is (outside a class).
func (p *reParser) escape(set *reSet, inClass bool) (assertion byte, err error) {
	if p.pos >= len(p.src) {
		return 0, p.errorf("\\ at end of pattern")
	}
	c := p.src[p.pos]
	p.pos++
	var class reSet
	switch c {
	case 'd', 'D':
		class.add('0', '9')
	case 'w', 'W':
		class = reWord
	case 's', 'S':
		class.add('\t', '\r') // \t \n \v \f \r, as PCRE 8.34 on
		class.add(' ', ' ')
	case 'n', 't', 'r', 'f', 'e', 'a':
		b := "\n\t\r\f\x1b\x07"[strings.IndexByte("ntrfea", c)]
		set.add(b, b)
		return 0, nil
	case 'x':
		if p.pos+2 > len(p.src) || !configIsHex([]byte(p.src[p.pos:p.pos+2])) {
			return 0, p.errorf("\\x takes two hex digits here")
		}
		v, _ := strconv.ParseUint(p.src[p.pos:p.pos+2], 16, 8)
		p.pos += 2
		set.add(byte(v), byte(v))
		return 0, nil
	case 'b', 'B', 'A', 'z', 'Z':
		switch {
		case c == 'b' && inClass: // a backspace in a class
			set.add('\b', '\b')
			return 0, nil
		case inClass:
			return 0, p.errorf("\\%c in a class", c)
		}
		return c, nil
	default:
		if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return 0, p.errorf("\\%c is not supported", c)
		}
		set.add(c, c)
		return 0, nil
	}
	if c >= 'A' && c <= 'Z' {
		class.invert()
	}
	set.union(&class)
	return 0, nil
}

// reWord is \w: the bytes of a word, for \b too.
var reWord = func() (s reSet) {
	s.add('a', 'z')
	s.add('A', 'Z')
	s.add('0', '9')
	s.add('_', '_')
	return s
}()

// rePOSIX are the [:name:] classes.
var rePOSIX = map[string]string{
	"alpha": "AZaz", "digit": "09", "alnum": "AZaz09", "upper": "AZ", "lower": "az",
	"space": "\t\r  ", "blank": "\t\t  ", "xdigit": "09AFaf", "word": "AZaz09__",
	"cntrl": "\x00\x1f\x7f\x7f", "print": " ~", "graph": "!~", "punct": "!/:@[`{~",
}

// class reads a bracket expression, after its [.
func (p *reParser) class(set *reSet) error {
	negate := p.peek('^')
	if negate {
		p.pos++
	}
	for first := true; ; first = false {
		if p.pos >= len(p.src) {
			return p.errorf("missing terminating ] for character class")
		}
		if p.peek(']') && !first {
			p.pos++
			break
		}
		if strings.HasPrefix(p.src[p.pos:], "[:") {
			end := strings.Index(p.src[p.pos:], ":]")
			name := ""
			if end > 2 {
				name = p.src[p.pos+2 : p.pos+end]
			}
			not := strings.HasPrefix(name, "^")
			ranges, ok := rePOSIX[strings.TrimPrefix(name, "^")]
			if !ok {
				return p.errorf("unknown POSIX class [:%s:]", name)
			}
			var c reSet
			for i := 0; i < len(ranges); i += 2 {
				c.add(ranges[i], ranges[i+1])
			}
			if not {
				c.invert()
			}
			set.union(&c)
			p.pos += end + 2
			continue
		}
		lo, single, err := p.classAtom(set)
		if err != nil {
			return err
		}
		if !single || !p.peek('-') || p.pos+1 >= len(p.src) || p.src[p.pos+1] == ']' {
			continue
		}
		p.pos++
		var hiSet reSet
		hi, single, err := p.classAtom(&hiSet)
		if err != nil {
			return err
		}
		if !single {
			return p.errorf("invalid range in character class")
		}
		if hi < lo {
			return p.errorf("range out of order in character class")
		}
		set.add(lo, hi)
	}
	if p.caseless {
		set.fold()
	}
	if negate {
		set.invert()
	}
	return nil
}

// classAtom adds one member of a class to set; single tells it was one
// byte, b, which may start a range.
func (p *reParser) classAtom(set *reSet) (b byte, single bool, err error) {
	c := p.src[p.pos]
	p.pos++
	if c != '\\' {
		set.add(c, c)
		return c, true, nil
	}
	var one reSet
	if _, err := p.escape(&one, true); err != nil {
		return 0, false, err
	}
	set.union(&one)
	n := 0
	for i := 0; i < 256; i++ {
		if one.has(byte(i)) {
			b, n = byte(i), n+1
		}
	}
	return b, n == 1, nil
}

// reInst is one instruction: op 'c' consumes a byte of set, '|' forks to
// x and y, 'j' jumps to x, 'm' is a match, anything else is an assertion
// (^ $ A z Z b B, and L E: line start and end); all but '|' and 'j' go on
// at the next instruction.
type reInst struct {
	_    noCompare
	op   byte
	x, y int
	set  reSet
}

type reProg []reInst

func configCompileRegexp(pattern string) (reProg, error) {
	p := &reParser{src: pattern}
	tree, err := p.alternation()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.src) {
		return nil, p.errorf("unmatched )")
	}
	var prog reProg
	if err := prog.compile(tree); err != nil {
		return nil, fmt.Errorf("regexp %q: %w", pattern, err)
	}
	return append(prog, reInst{op: 'm'}), nil
}

func (prog *reProg) emit(in reInst) int {
	*prog = append(*prog, in)
	return len(*prog) - 1
}

func (prog *reProg) compile(n *reNode) error {
	if len(*prog) > configRegexpMaxProg {
		return fmt.Errorf("over %d instructions", configRegexpMaxProg)
	}
	switch n.kind {
	case 'c':
		prog.emit(reInst{op: 'c', set: n.set})
	case 'a':
		prog.emit(reInst{op: n.op})
	case '.':
		for _, sub := range n.subs {
			if err := prog.compile(sub); err != nil {
				return err
			}
		}
	case '|':
		var jumps []int
		for i, sub := range n.subs {
			fork := -1
			if i < len(n.subs)-1 {
				fork = prog.emit(reInst{op: '|'})
				(*prog)[fork].x = fork + 1
			}
			if err := prog.compile(sub); err != nil {
				return err
			}
			if fork >= 0 {
				jumps = append(jumps, prog.emit(reInst{op: 'j'}))
				(*prog)[fork].y = len(*prog)
			}
		}
		for _, j := range jumps {
			(*prog)[j].x = len(*prog)
		}
	case '*':
		for i := 0; i < n.min; i++ {
			if err := prog.compile(n.subs[0]); err != nil {
				return err
			}
		}
		if n.max < 0 { // a loop: fork into the body or out, the body jumps back
			fork := prog.emit(reInst{op: '|'})
			(*prog)[fork].x = fork + 1
			if err := prog.compile(n.subs[0]); err != nil {
				return err
			}
			prog.emit(reInst{op: 'j', x: fork})
			(*prog)[fork].y = len(*prog)
			return nil
		}
		var forks []int // up to max-min more, each optional
		for i := n.min; i < n.max; i++ {
			fork := prog.emit(reInst{op: '|'})
			(*prog)[fork].x = fork + 1
			forks = append(forks, fork)
			if err := prog.compile(n.subs[0]); err != nil {
				return err
			}
		}
		for _, fork := range forks {
			(*prog)[fork].y = len(*prog)
		}
	}
	return nil
}

// holds reports whether assertion op is true between s[:pos] and s[pos:].
func (prog reProg) holds(op byte, s string, pos int) bool {
	word := func(i int) bool { return i >= 0 && i < len(s) && reWord.has(s[i]) }
	switch op {
	case '^', 'A':
		return pos == 0
	case 'z':
		return pos == len(s)
	case '$', 'Z': // the end, or before a final newline
		return pos == len(s) || pos == len(s)-1 && s[pos] == '\n'
	case 'L':
		return pos == 0 || s[pos-1] == '\n'
	case 'E':
		return pos == len(s) || s[pos] == '\n'
	case 'b':
		return word(pos-1) != word(pos)
	case 'B':
		return word(pos-1) == word(pos)
	}
	return false
}

// match runs the program over s, starting a thread at every position
// (PCRE searches; it does not anchor) until one reaches the match.
func (prog reProg) match(s string) bool {
	cur, next := make([]int, 0, len(prog)), make([]int, 0, len(prog))
	seen := make([]int, len(prog)) // the step a pc was last added at, plus one
	var stack []int
	// add follows forks, jumps and assertions from pc at pos, appending
	// the byte-consuming instructions reached to list; true on a match.
	add := func(list *[]int, pc, pos int) bool {
		stack = append(stack[:0], pc)
		for len(stack) > 0 {
			pc := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[pc] == pos+1 {
				continue
			}
			seen[pc] = pos + 1
			switch in := &prog[pc]; in.op {
			case 'm':
				return true
			case 'c':
				*list = append(*list, pc)
			case 'j':
				stack = append(stack, in.x)
			case '|':
				stack = append(stack, in.y, in.x)
			default:
				if prog.holds(in.op, s, pos) {
					stack = append(stack, pc+1)
				}
			}
		}
		return false
	}
	for pos := 0; ; pos++ {
		if add(&cur, 0, pos) {
			return true
		}
		if pos == len(s) {
			return false
		}
		next = next[:0]
		for _, pc := range cur {
			if prog[pc].set.has(s[pos]) && add(&next, pc+1, pos+1) {
				return true
			}
		}
		cur, next = next, cur
	}
}

// configParseINIText follows core/ini.c: no inline comments, no quoting, the
// section header is the line minus its first and last byte, a key without '='
// gets an empty value, repeated sections and keys all count.
func configParseINIText(t *cfgText, section string) ([]Option, error) {
	if section == "" {
		section = "uwsgi"
	}
	var out []Option
	cur := ""
	data := t.data
	for off := 0; off < len(data); {
		lineOff := off
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data) - off
		}
		line := configTrimINI(data[off : off+end])
		off += end + 1
		switch {
		case len(line) == 0, line[0] == ';', line[0] == '#':
		case line[0] == '[':
			cur = ""
			if len(line) > 1 {
				cur = string(line[1 : len(line)-1])
			}
		case cur == section:
			k, v, _ := bytes.Cut(line, []byte{'='})
			out = append(out, Option{
				Key:   string(bytes.TrimRight(k, " \t\r")),
				Value: string(configTrimINI(v)),
				Src:   t.src(lineOff),
			})
		}
	}
	return out, nil
}

func configTrimINI(b []byte) []byte { return bytes.Trim(b, " \t\r") }

// configParseYAMLText is uWSGI's line-based YAML subset (core/yaml.c without
// libyaml) with the parts of the libyaml build that real configs rely on:
// "key:" followed by "- item" lines (or "key: [a, b]") gives one option per
// item, nested mappings are flattened, quoted scalars are unquoted and '#'
// starts a comment only at the start of a line or after a blank.
func configParseYAMLText(t *cfgText, section string) ([]Option, error) {
	if section == "" {
		section = "uwsgi"
	}
	var out []Option
	in, curDepth, secDepth, listKey := false, 0, 0, ""
	off := 0
	if bytes.HasPrefix(t.data, []byte("\xef\xbb\xbf")) {
		off = 3 // libyaml reads a UTF-8 byte order mark as such
	}
	for off < len(t.data) {
		lineOff := off
		end := bytes.IndexByte(t.data[off:], '\n')
		if end < 0 {
			end = len(t.data) - off
		}
		depth, content := configYAMLIndent(string(t.data[off : off+end]))
		off += end + 1
		if content == "" || content[0] == '#' {
			continue
		}
		if !in {
			if depth > curDepth {
				continue
			}
			curDepth = depth
			if k, _, ok := configYAMLSplit(content); ok && content[0] != '-' && content[0] != '[' && content[0] != '{' {
				if key, err := configYAMLKey(t, lineOff, k); err == nil && key == section {
					in, secDepth = true, depth
				}
			}
			continue
		}
		if depth <= secDepth || content[0] == '[' || content[0] == '{' {
			break
		}
		opts, key, stop, err := configYAMLLine(t, lineOff, content, listKey, func(header string) (string, error) {
			v, next, err := configYAMLBlock(t, lineOff, off, depth, header)
			off = next
			return v, err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, opts...)
		if stop {
			break
		}
		if key != "" {
			listKey = key
		}
	}
	return out, nil
}

// configYAMLIndent measures indentation like core/yaml.c (a tab or CR counts
// 8) and returns the rest of the line without trailing blanks.
func configYAMLIndent(line string) (int, string) {
	depth, i := 0, 0
	for ; i < len(line); i++ {
		switch line[i] {
		case ' ':
			depth++
		case '\t', '\r':
			depth += 8
		default:
			return depth, strings.TrimRight(line[i:], " \t\r")
		}
	}
	return depth, ""
}

// configYAMLLine handles one line inside the section. It returns the options
// the line yields, the key that later "- item" lines belong to, and whether
// the section ends here. A block scalar's header ("|", ">-") goes to block,
// which reads the lines that follow.
func configYAMLLine(t *cfgText, off int, content, listKey string, block func(header string) (string, error)) ([]Option, string, bool, error) {
	src := t.src(off)
	value := func(s string) (string, bool, error) {
		if s = strings.TrimLeft(s, " \t"); s != "" && (s[0] == '|' || s[0] == '>') {
			v, err := block(s)
			return v, err == nil, err
		}
		return configYAMLScalar(t, off, s)
	}
	if content[0] == '-' && (len(content) == 1 || content[1] == ' ' || content[1] == '\t') {
		v, present, err := value(content[1:])
		if err != nil || !present || listKey == "" {
			return nil, "", false, err
		}
		return []Option{{Key: listKey, Value: v, Src: src}}, "", false, nil
	}
	k, rest, ok := configYAMLSplit(content)
	if !ok {
		return nil, "", true, nil // core/yaml.c stops at a line that is not "key: value"
	}
	key, err := configYAMLKey(t, off, k)
	if err != nil {
		return nil, "", false, err
	}
	rest = strings.TrimLeft(rest, " \t")
	if rest != "" && (rest[0] == '"' || rest[0] == '\'') {
		if v, after, err := configYAMLQuoted(rest); err == nil {
			if after = strings.TrimLeft(after, " \t"); after != "" && after[0] != '#' {
				// libyaml ends the scalar at its quote, and uWSGI's walk
				// over its tokens stops at the text after it.
				return []Option{{Key: key, Value: v, Src: src}}, "", true, nil
			}
		}
	}
	if strings.HasPrefix(rest, "[") {
		items, err := configYAMLFlow(t, off, rest)
		var opts []Option
		for _, it := range items {
			opts = append(opts, Option{Key: key, Value: it, Src: src})
		}
		return opts, "", false, err
	}
	v, present, err := value(rest)
	if err != nil {
		return nil, "", false, err
	}
	if !present {
		return nil, key, false, nil // "key:" opens a sequence or a nested mapping
	}
	return []Option{{Key: key, Value: v, Src: src}}, "", false, nil
}

// configYAMLSplit cuts "key: rest" at the first ':' followed by a blank or
// the end of the line.
func configYAMLSplit(content string) (key, rest string, ok bool) {
	from := 0
	if content != "" && (content[0] == '"' || content[0] == '\'') {
		if _, after, err := configYAMLQuoted(content); err == nil {
			from = len(content) - len(after) // a quoted key may hold ": "
		}
	}
	for i := from; i < len(content); i++ {
		if content[i] == ':' && (i+1 == len(content) || content[i+1] == ' ' || content[i+1] == '\t') {
			return content[:i], content[i+1:], true
		}
	}
	return "", "", false
}

func configYAMLKey(t *cfgText, off int, k string) (string, error) {
	v, _, err := configYAMLScalar(t, off, k)
	return v, err
}

// configYAMLScalar reads a plain, 'single' or "double" quoted scalar and
// reports whether there was one at all (a lone comment is none).
func configYAMLScalar(t *cfgText, off int, s string) (string, bool, error) {
	s = strings.Trim(s, " \t")
	if s == "" || s[0] == '#' {
		return "", false, nil
	}
	switch s[0] {
	case '"', '\'':
		v, rest, err := configYAMLQuoted(s)
		if err != nil {
			return "", false, t.errorf(off, "%v", err)
		}
		if rest = strings.TrimLeft(rest, " \t"); rest != "" && rest[0] != '#' {
			return "", false, t.errorf(off, "unexpected text after quoted scalar: %q", rest)
		}
		return v, true, nil
	case '|', '>':
		return "", false, t.errorf(off, "a block scalar (%c) cannot be a key", s[0])
	}
	for i := 1; i < len(s); i++ {
		if s[i] == '#' && (s[i-1] == ' ' || s[i-1] == '\t') {
			s = strings.TrimRight(s[:i], " \t")
			break
		}
	}
	return s, true, nil
}

// configYAMLBlock reads a block scalar as libyaml's scanner does: header is
// its indicators ("|" literal or ">" folded, then "+"/"-" chomping and an
// indentation digit, in either order, then perhaps a comment), data[off:] the
// lines after it, parent the indentation of the node it belongs to. It
// returns the value and where the line after the scalar starts. Content
// lines are those indented to the block's indentation (the digit, else the
// first non-empty line's) and the empty lines among them; folding joins
// two lines by a space unless either starts with a blank or empty lines
// separate them; chomping keeps the final line break (clip), drops it (-)
// or keeps every trailing one (+).
func configYAMLBlock(t *cfgText, lineOff, off, parent int, header string) (string, int, error) {
	literal, chomp, indent := header[0] == '|', 0, 0
	i := 1
	for ; i < len(header) && i < 3; i++ {
		c := header[i]
		if (c == '+' || c == '-') && chomp == 0 {
			chomp = 1
			if c == '-' {
				chomp = -1
			}
		} else if c >= '0' && c <= '9' && indent == 0 {
			if c == '0' {
				return "", off, t.errorf(lineOff, "a block scalar's indentation indicator cannot be 0")
			}
			indent = parent + int(c-'0')
		} else {
			break
		}
	}
	if rest := strings.TrimLeft(header[i:], " \t"); rest != "" && (rest[0] != '#' || len(rest) == len(header[i:])) {
		return "", off, t.errorf(lineOff, "unexpected text after a block scalar's indicators: %q", header[i:])
	}
	data := t.data
	pos, col, line := off, 0, off
	// breaks eats indentation (up to the block's, once known) and empty
	// lines, one '\n' each.
	breaks := func(out []byte) ([]byte, error) {
		most := 0
		for {
			for (indent == 0 || col < indent) && pos < len(data) && data[pos] == ' ' {
				pos, col = pos+1, col+1
			}
			most = max(most, col)
			if (indent == 0 || col < indent) && pos < len(data) && data[pos] == '\t' {
				return out, t.errorf(line, "a tab where block scalar indentation is expected")
			}
			if pos >= len(data) || (data[pos] != '\n' && data[pos] != '\r') {
				if indent == 0 {
					indent = max(most, parent+1, 1)
				}
				return out, nil
			}
			if data[pos] == '\r' && pos+1 < len(data) && data[pos+1] == '\n' {
				pos++
			}
			pos, col, line = pos+1, 0, pos+1
			out = append(out, '\n')
		}
	}
	trailing, err := breaks(nil)
	var out, leading []byte
	leadingBlank := false
	for err == nil && col == indent && pos < len(data) {
		trailingBlank := data[pos] == ' ' || data[pos] == '\t'
		if !literal && len(leading) > 0 && !leadingBlank && !trailingBlank {
			if len(trailing) == 0 {
				out = append(out, ' ')
			}
		} else {
			out = append(out, leading...)
		}
		out, leading, leadingBlank = append(out, trailing...), leading[:0], trailingBlank
		for pos < len(data) && data[pos] != '\n' && data[pos] != '\r' {
			out = append(out, data[pos])
			pos++
		}
		if pos == len(data) {
			line = pos
			break
		}
		if data[pos] == '\r' && pos+1 < len(data) && data[pos+1] == '\n' {
			pos++
		}
		pos, col, line = pos+1, 0, pos+1
		leading = append(leading, '\n')
		trailing, err = breaks(trailing[:0])
	}
	if err != nil {
		return "", off, err
	}
	if chomp != -1 {
		out = append(out, leading...)
	}
	if chomp == 1 {
		out = append(out, trailing...)
	}
	return string(out), line, nil
}

// configYAMLQuoted decodes a quoted scalar at the start of s and returns the
// text after the closing quote.
func configYAMLQuoted(s string) (string, string, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q && q == '\'' && i+1 < len(s) && s[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == q:
			return b.String(), s[i+1:], nil
		case c == '\\' && q == '"':
			n, err := configYAMLEscape(&b, s[i+1:])
			if err != nil {
				return "", "", err
			}
			i += n
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("unterminated quoted string %s", s)
}

// configYAMLEscapes are the one-character escapes of double-quoted YAML.
var configYAMLEscapes = map[byte]string{'0': "\x00", 'a': "\a", 'b': "\b", 't': "\t", '\t': "\t",
	'n': "\n", 'v': "\v", 'f': "\f", 'r': "\r", 'e': "\x1b", ' ': " ", '"': "\"", '/': "/",
	'\\': "\\", 'N': "\u0085", '_': "\u00a0", 'L': "\u2028", 'P': "\u2029"}

// configYAMLEscape decodes the escape after a backslash and returns how many
// bytes it used.
func configYAMLEscape(b *strings.Builder, s string) (int, error) {
	if s == "" {
		return 0, errors.New("unterminated escape sequence")
	}
	if r, ok := configYAMLEscapes[s[0]]; ok {
		b.WriteString(r)
		return 1, nil
	}
	width := map[byte]int{'x': 2, 'u': 4, 'U': 8}[s[0]]
	if width == 0 || len(s) < 1+width {
		return 0, fmt.Errorf("invalid escape sequence \\%c", s[0])
	}
	n, err := strconv.ParseUint(s[1:1+width], 16, 32)
	if err != nil || n > 0x10FFFF {
		return 0, fmt.Errorf("invalid escape sequence \\%s", s[:1+width])
	}
	b.WriteRune(rune(n))
	return 1 + width, nil
}

// configYAMLFlow reads a one-line flow sequence "[a, 'b', c]".
func configYAMLFlow(t *cfgText, off int, s string) ([]string, error) {
	var items []string
	s = s[1:]
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return nil, t.errorf(off, "unterminated flow sequence")
		}
		if s[0] == ']' {
			if rest := strings.TrimLeft(s[1:], " \t"); rest != "" && rest[0] != '#' {
				return nil, t.errorf(off, "unexpected text after flow sequence: %q", rest)
			}
			return items, nil
		}
		if s[0] == '[' || s[0] == '{' {
			return nil, configUnsupported(t.errorf(off, "nested flow collections are not supported"))
		}
		var item string
		if s[0] == '"' || s[0] == '\'' {
			v, rest, err := configYAMLQuoted(s)
			if err != nil {
				return nil, t.errorf(off, "%v", err)
			}
			item, s = v, strings.TrimLeft(rest, " \t")
		} else {
			end := strings.IndexAny(s, ",]")
			if end < 0 {
				return nil, t.errorf(off, "unterminated flow sequence")
			}
			item, s = strings.TrimRight(s[:end], " \t"), s[end:]
		}
		items = append(items, item)
		if strings.HasPrefix(s, ",") {
			s = s[1:]
		} else if !strings.HasPrefix(s, "]") {
			return nil, t.errorf(off, "expected ',' or ']' in flow sequence")
		}
	}
}

// configParseJSONText follows core/json.c (yajl-tree build): the first member
// named section of the top-level object must be an object; each of its
// members gives options, arrays one per scalar element; true is "1", false and
// null "0", numbers keep their text, nested objects are ignored. Like
// yajl_tree, comments are allowed and duplicate keys are all kept.
func configParseJSONText(t *cfgText, section string) ([]Option, error) {
	if section == "" {
		section = "uwsgi"
	}
	j := &cfgJSON{t: t}
	root, err := j.document()
	if err != nil {
		return nil, err
	}
	var obj *cfgJSONValue
	if root.kind == '{' {
		for i, k := range root.keys {
			if k == section {
				obj = root.vals[i]
				break
			}
		}
	}
	if obj == nil || obj.kind != '{' {
		return nil, t.errorf(0, "you must define a object named %s in your JSON data", section)
	}
	var out []Option
	for i, k := range obj.keys {
		v := obj.vals[i]
		if v.kind == '[' {
			for _, item := range v.vals {
				if s, ok := item.scalar(); ok {
					out = append(out, Option{Key: k, Value: s, Src: t.src(obj.offs[i])})
				}
			}
		} else if s, ok := v.scalar(); ok {
			out = append(out, Option{Key: k, Value: s, Src: t.src(obj.offs[i])})
		}
	}
	return out, nil
}

// cfgJSONValue is a parsed JSON value; kind is one of { [ s n t f z(null).
type cfgJSONValue struct {
	kind byte
	str  string // string contents or number text
	keys []string
	offs []int // byte offset of each key, for messages
	vals []*cfgJSONValue
}

func (v *cfgJSONValue) scalar() (string, bool) {
	switch v.kind {
	case 's', 'n':
		return v.str, true
	case 't':
		return "1", true
	case 'f', 'z':
		return "0", true
	}
	return "", false
}

// cfgJSON is a small recursive-descent JSON parser: the standard library's
// decoder has neither comments nor ordered duplicate keys.
type cfgJSON struct {
	t     *cfgText
	pos   int
	depth int
}

const configJSONMaxDepth = 512

var configJSONLiterals = []struct {
	text string
	kind byte
}{{"true", 't'}, {"false", 'f'}, {"null", 'z'}}

func (j *cfgJSON) document() (*cfgJSONValue, error) {
	v, err := j.value()
	if err != nil {
		return nil, err
	}
	if err := j.skipSpace(); err != nil {
		return nil, err
	}
	if j.pos < len(j.t.data) {
		return nil, j.errorf("parse error: trailing garbage")
	}
	return v, nil
}

func (j *cfgJSON) errorf(format string, a ...any) error { return j.t.errorf(j.pos, format, a...) }

// skipSpace skips blanks and /* */ or // comments.
func (j *cfgJSON) skipSpace() error {
	d := j.t.data
	for j.pos < len(d) {
		switch c := d[j.pos]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f': // yajl's white space
			j.pos++
		case c == '/' && j.pos+1 < len(d) && d[j.pos+1] == '/':
			for j.pos < len(d) && d[j.pos] != '\n' {
				j.pos++
			}
		case c == '/' && j.pos+1 < len(d) && d[j.pos+1] == '*':
			end := bytes.Index(d[j.pos+2:], []byte("*/"))
			if end < 0 {
				return j.errorf("parse error: unterminated comment")
			}
			j.pos += end + 4
		default:
			return nil
		}
	}
	return nil
}

func (j *cfgJSON) value() (*cfgJSONValue, error) {
	if err := j.skipSpace(); err != nil {
		return nil, err
	}
	d := j.t.data
	if j.pos >= len(d) {
		return nil, j.errorf("parse error: premature EOF")
	}
	switch c := d[j.pos]; {
	case c == '{' || c == '[':
		if j.depth++; j.depth > configJSONMaxDepth {
			return nil, j.errorf("parse error: nesting deeper than %d", configJSONMaxDepth)
		}
		defer func() { j.depth-- }()
		if c == '{' {
			return j.object()
		}
		return j.array()
	case c == '"':
		s, err := j.str()
		return &cfgJSONValue{kind: 's', str: s}, err
	case c == '-' || (c >= '0' && c <= '9'):
		return j.number()
	}
	for _, lit := range configJSONLiterals {
		if bytes.HasPrefix(d[j.pos:], []byte(lit.text)) {
			j.pos += len(lit.text)
			return &cfgJSONValue{kind: lit.kind}, nil
		}
	}
	return nil, j.errorf("parse error: invalid token %q", configSnippet(d[j.pos:]))
}

func (j *cfgJSON) object() (*cfgJSONValue, error) {
	v := &cfgJSONValue{kind: '{'}
	j.pos++
	for first := true; ; first = false {
		if err := j.skipSpace(); err != nil {
			return nil, err
		}
		if j.pos < len(j.t.data) && j.t.data[j.pos] == '}' && first {
			j.pos++
			return v, nil
		}
		if j.pos >= len(j.t.data) || j.t.data[j.pos] != '"' {
			return nil, j.errorf("parse error: object key expected")
		}
		keyOff := j.pos
		k, err := j.str()
		if err != nil {
			return nil, err
		}
		if err := j.expect(':'); err != nil {
			return nil, err
		}
		val, err := j.value()
		if err != nil {
			return nil, err
		}
		v.keys, v.offs, v.vals = append(v.keys, k), append(v.offs, keyOff), append(v.vals, val)
		if done, err := j.next('}'); done || err != nil {
			return v, err
		}
	}
}

func (j *cfgJSON) array() (*cfgJSONValue, error) {
	v := &cfgJSONValue{kind: '['}
	j.pos++
	if err := j.skipSpace(); err != nil {
		return nil, err
	}
	if j.pos < len(j.t.data) && j.t.data[j.pos] == ']' {
		j.pos++
		return v, nil
	}
	for {
		val, err := j.value()
		if err != nil {
			return nil, err
		}
		v.vals = append(v.vals, val)
		if done, err := j.next(']'); done || err != nil {
			return v, err
		}
	}
}

// next consumes ',' (more to come) or the closing byte (done).
func (j *cfgJSON) next(closing byte) (bool, error) {
	if err := j.skipSpace(); err != nil {
		return false, err
	}
	if j.pos >= len(j.t.data) {
		return false, j.errorf("parse error: premature EOF")
	}
	switch j.t.data[j.pos] {
	case ',':
		j.pos++
		return false, nil
	case closing:
		j.pos++
		return true, nil
	}
	return false, j.errorf("parse error: expected ',' or '%c'", closing)
}

func (j *cfgJSON) expect(c byte) error {
	if err := j.skipSpace(); err != nil {
		return err
	}
	if j.pos >= len(j.t.data) || j.t.data[j.pos] != c {
		return j.errorf("parse error: expected '%c'", c)
	}
	j.pos++
	return nil
}

// number keeps the literal text, as yajl-tree hands it to uWSGI.
func (j *cfgJSON) number() (*cfgJSONValue, error) {
	d, start := j.t.data, j.pos
	digits := func() int {
		n := 0
		for j.pos < len(d) && d[j.pos] >= '0' && d[j.pos] <= '9' {
			j.pos++
			n++
		}
		return n
	}
	if d[j.pos] == '-' {
		j.pos++
	}
	if j.pos < len(d) && d[j.pos] == '0' {
		j.pos++
	} else if digits() == 0 {
		return nil, j.errorf("parse error: malformed number")
	}
	if j.pos < len(d) && d[j.pos] == '.' {
		j.pos++
		if digits() == 0 {
			return nil, j.errorf("parse error: malformed number, a digit is required after the decimal point")
		}
	}
	if j.pos < len(d) && (d[j.pos] == 'e' || d[j.pos] == 'E') {
		j.pos++
		if j.pos < len(d) && (d[j.pos] == '+' || d[j.pos] == '-') {
			j.pos++
		}
		if digits() == 0 {
			return nil, j.errorf("parse error: malformed number, a digit is required after the exponent")
		}
	}
	return &cfgJSONValue{kind: 'n', str: string(d[start:j.pos])}, nil
}

// str decodes a JSON string at j.pos (the opening quote).
func (j *cfgJSON) str() (string, error) {
	d := j.t.data
	j.pos++
	start := j.pos
	for j.pos < len(d) && d[j.pos] != '"' && d[j.pos] != '\\' && d[j.pos] >= 0x20 {
		j.pos++
	}
	if j.pos < len(d) && d[j.pos] == '"' { // fast path: no escapes
		s := string(d[start:j.pos])
		j.pos++
		if !utf8.ValidString(s) {
			return "", j.t.errorf(start, "lexical error: invalid bytes in UTF8 string")
		}
		return s, nil
	}
	j.pos = start - 1
	end, err := j.strEnd()
	if err != nil {
		return "", err
	}
	raw := d[start-1 : end]
	if !utf8.Valid(raw) {
		return "", j.t.errorf(start, "lexical error: invalid bytes in UTF8 string")
	}
	j.pos = end
	s, _, _ := strings.Cut(configJSONUnquote(raw[1:len(raw)-1]), "\x00") // \u0000: uWSGI's C strings end there
	return s, nil
}

// configJSONUnquote decodes the escapes of a string's contents that strEnd
// has validated, as encoding/json does: a \u escape of half a surrogate
// pair that the next one does not complete becomes U+FFFD.
func configJSONUnquote(raw []byte) string {
	b := make([]byte, 0, len(raw))
	hex4 := func(h []byte) rune {
		n, _ := strconv.ParseUint(string(h), 16, 32)
		return rune(n)
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			b = append(b, raw[i])
			continue
		}
		i++
		switch c := raw[i]; c {
		case 'b', 'f', 'n', 'r', 't':
			b = append(b, "\b\f\n\r\t"[strings.IndexByte("bfnrt", c)])
		case 'u':
			r := hex4(raw[i+1 : i+5])
			i += 4
			if utf16.IsSurrogate(r) {
				pair := utf8.RuneError
				if i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					pair = utf16.DecodeRune(r, hex4(raw[i+3:i+7]))
				}
				if r = pair; r != utf8.RuneError {
					i += 6
				}
			}
			b = utf8.AppendRune(b, r)
		default: // " \ /
			b = append(b, c)
		}
	}
	return string(b)
}

// strEnd finds the end of the string at j.pos, validating escapes and
// control characters, and returns the offset just past the closing quote.
func (j *cfgJSON) strEnd() (int, error) {
	d := j.t.data
	for i := j.pos + 1; i < len(d); i++ {
		switch c := d[i]; {
		case c == '"':
			return i + 1, nil
		case c < 0x20:
			return 0, j.t.errorf(i, "lexical error: invalid character inside string")
		case c == '\\':
			if i+1 >= len(d) {
				return 0, j.t.errorf(i, "parse error: premature EOF")
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+6 > len(d) || !configIsHex(d[i+2:i+6]) {
					return 0, j.t.errorf(i, "lexical error: invalid (non-hex) character occurs after '\\u' inside string")
				}
				i += 5
			default:
				return 0, j.t.errorf(i, "lexical error: inside a string, '\\' occurs before a character which it may not")
			}
		}
	}
	return 0, j.t.errorf(len(d), "parse error: premature EOF (unterminated string)")
}

func configIsHex(b []byte) bool {
	for _, c := range b {
		if !strings.ContainsRune("0123456789abcdefABCDEF", rune(c)) {
			return false
		}
	}
	return true
}

// configSnippet shortens text quoted in an error message.
func configSnippet(b []byte) string {
	if len(b) > 20 {
		b = b[:20]
	}
	return string(b)
}

// cfgXMLNode is the little DOM the XML loader needs: libxml2's node kinds
// e(lement), t(ext), c(data), m (comment), p(rocessing instruction).
type cfgXMLNode struct {
	kind     byte
	name     string
	attrs    []string // name, value, name, value, ...
	text     string
	off      int
	children []*cfgXMLNode
}

// attr is the value of the first attribute of that local name, in any
// namespace, as libxml2's xmlGetProp finds it.
func (n *cfgXMLNode) attr(name string) (string, bool) {
	for i := 0; i+1 < len(n.attrs); i += 2 {
		if n.attrs[i] == name {
			return n.attrs[i+1], true
		}
	}
	return "", false
}

// content is libxml2's node->content: text of text-like nodes, none for
// elements nor for an empty processing instruction.
func (n *cfgXMLNode) content() (string, bool) {
	return n.text, n.kind != 'e' && (n.kind != 'p' || n.text != "")
}

// configParseXMLText follows core/xmlconf.c (libxml2 build): the root
// <uwsgi>, or the first <uwsgi> child of the root whose id matches; each child
// element is an option valued by the text of its first child node ("1" when
// empty); children with a different id are skipped; a CDATA child is "eval";
// <app mountpoint=...> becomes mount + app. The mode attribute never filters
// because uWSGI has not executed --mode yet when it parses the file.
func configParseXMLText(t *cfgText, id string) ([]Option, error) {
	root, err := configXMLTree(t)
	if err != nil {
		return nil, err
	}
	elem := root
	if root.name != "uwsgi" && len(root.children) > 0 { // a childless root stays, as in core/xmlconf.c
		elem = nil
		for _, c := range root.children {
			if c.kind != 'e' || c.name != "uwsgi" {
				continue
			}
			if cid, ok := c.attr("id"); id != "" && ok && cid != id {
				continue
			}
			elem = c
			break
		}
		if elem == nil {
			return nil, t.errorf(root.off, "invalid xml root element, <uwsgi> expected")
		}
	}
	var out []Option
	for _, n := range elem.children {
		if nid, ok := n.attr("id"); id != "" && ok && nid != id {
			continue
		}
		src := t.src(n.off)
		switch {
		case n.kind == 'c':
			out = append(out, Option{Key: "eval", Value: n.text, Src: src})
		case n.kind == 'e' && n.name == "app":
			out = append(out, configXMLApp(n, src)...)
		case n.kind == 'e' && len(n.children) == 0:
			out = append(out, Option{Key: n.name, Value: "1", Src: src})
		case n.kind == 'e':
			v, _ := n.children[0].content() // uWSGI would crash on an element here
			out = append(out, Option{Key: n.name, Value: v, Src: src})
		}
	}
	return out, nil
}

// configXMLApp is the legacy <app mountpoint="/x">script</app> form.
func configXMLApp(n *cfgXMLNode, src string) []Option {
	app := Option{Key: "app", Value: "", Src: src}
	if len(n.children) == 0 {
		return []Option{app}
	}
	var v string
	var ok bool
	if len(n.children) == 1 {
		v, ok = n.children[0].content()
	} else if second := n.children[1]; len(second.children) > 0 {
		v, ok = second.children[0].content()
	}
	if !ok {
		return nil
	}
	if mp, has := n.attr("mountpoint"); has {
		v = mp + "=" + v
	} else if dom, has := n.attr("domain"); has {
		v = dom + "|=" + v
	}
	return []Option{{Key: "mount", Value: v, Src: src}, app}
}

// configXMLMaxDepth bounds element nesting as libxml2 does without
// XML_PARSE_HUGE; only the first levels are kept.
const (
	configXMLMaxDepth  = 257
	configXMLKeepDepth = 5
)

// cfgXMLScan reads a config's XML as libxml2 does for uWSGI: well-formed
// XML 1.0 in UTF-8 or Latin-1, the five predefined entities and character
// references, no DTD processing (a DOCTYPE is skipped). It works on the raw
// bytes, so every offset is one into the file for line numbers.
type cfgXMLScan struct {
	t      *cfgText
	d      []byte
	i      int
	decl   int // offset of the XML declaration, -1 without one
	latin1 bool
	ascii  bool     // declared so: a byte past 0x7f is an error
	ns     []string // namespace prefixes bound by the open elements
	nsOpen []int    // len(ns) as each open element found it
}

func (x *cfgXMLScan) fail(off int, format string, a ...any) error {
	return x.t.errorf(off, "XML error: "+format, a...)
}

// configXMLTree builds the DOM down to configXMLKeepDepth levels, requiring a
// single well-formed root element like libxml2.
func configXMLTree(t *cfgText) (*cfgXMLNode, error) {
	x := &cfgXMLScan{t: t, d: t.data, decl: -1}
	if bytes.HasPrefix(x.d, []byte("\xef\xbb\xbf")) {
		x.i = 3
	}
	if err := x.prolog(); err != nil {
		return nil, err
	}
	if err := x.validate(); err != nil {
		return nil, err
	}
	var root *cfgXMLNode
	var kept []*cfgXMLNode // the open elements the DOM keeps
	var open []string      // every open element's name as written
	for x.i < len(x.d) {
		start := x.i
		rest := x.d[start:]
		var n *cfgXMLNode
		var err error
		closes := false // an end tag, or <a/>
		switch {
		case rest[0] != '<':
			n, err = x.charData()
		case bytes.HasPrefix(rest, []byte("</")):
			x.i += 2
			name := x.name()
			x.space()
			if x.i >= len(x.d) || x.d[x.i] != '>' {
				return nil, x.fail(x.i, "invalid characters between </%s and >", name)
			}
			x.i++
			if len(open) == 0 {
				return nil, x.fail(start, "unexpected end element </%s>", name)
			}
			if top := open[len(open)-1]; top != name {
				return nil, x.fail(start, "element <%s> closed by </%s>", top, name)
			}
			closes = true
		case bytes.HasPrefix(rest, []byte("<!--")):
			n, err = x.delimited(start, 4, "-->", 'm')
		case bytes.HasPrefix(rest, []byte("<![CDATA[")) && len(open) > 0:
			n, err = x.delimited(start, 9, "]]>", 'c')
		case bytes.HasPrefix(rest, []byte("<!DOCTYPE")) && root == nil:
			err = x.doctype()
		case bytes.HasPrefix(rest, []byte("<?")):
			n, err = x.procInst(start)
		default:
			n, closes, err = x.startTag()
		}
		if err != nil {
			return nil, err
		}
		depth := len(open)
		switch {
		case n == nil:
		case n.kind != 'e' && depth == 0:
			if n.kind == 't' && strings.Trim(n.text, " \t\n") != "" {
				return nil, t.errorf(start, "text outside the root element")
			}
		case n.kind != 'e':
			if depth > len(kept) {
				break
			}
			parent := kept[depth-1]
			if last := len(parent.children) - 1; n.kind == 'c' && last >= 0 && parent.children[last].kind == 'c' {
				parent.children[last].text += n.text // libxml2 merges adjacent CDATA
				break
			}
			parent.children = append(parent.children, n)
		case depth == 0 && root != nil:
			return nil, t.errorf(start, "extra content at the end of the document")
		case depth >= configXMLMaxDepth:
			return nil, x.fail(start, "Excessive depth in document: %d", configXMLMaxDepth-1)
		default:
			open = append(open, n.name)
			x.bind(n)
			if depth == 0 {
				root = n
				kept = append(kept, n)
			} else if depth == len(kept) && depth < configXMLKeepDepth {
				kept[depth-1].children = append(kept[depth-1].children, n)
				kept = append(kept, n)
			}
		}
		if closes {
			open = open[:len(open)-1]
			kept = kept[:min(len(kept), len(open))]
			x.ns = x.ns[:x.nsOpen[len(open)]]
			x.nsOpen = x.nsOpen[:len(open)]
		}
	}
	if len(open) > 0 {
		return nil, x.fail(len(x.d), "unexpected EOF: <%s> is not closed", open[len(open)-1])
	}
	if root == nil {
		return nil, t.errorf(len(x.d), "document is empty (no root element)")
	}
	return root, nil
}

// bind takes an element's namespace declarations out of its attributes
// and names it and its attributes as libxml2 does: the local name when
// the prefix is bound (xml always is) and the rest a valid name, else the
// whole name as written.
func (x *cfgXMLScan) bind(n *cfgXMLNode) {
	x.nsOpen = append(x.nsOpen, len(x.ns))
	attrs := n.attrs[:0:0]
	for i := 0; i+1 < len(n.attrs); i += 2 {
		name, v := n.attrs[i], n.attrs[i+1]
		if p, ok := strings.CutPrefix(name, "xmlns:"); ok {
			// Bindings libxml2 refuses bind nothing.
			if v != "" && v != "http://www.w3.org/2000/xmlns/" && (v != "http://www.w3.org/XML/1998/namespace") == (p != "xml") {
				x.ns = append(x.ns, p)
			}
			continue
		}
		if name != "xmlns" {
			attrs = append(attrs, name, v)
		}
	}
	n.attrs = attrs
	n.name = x.local(n.name)
	for i := 0; i < len(n.attrs); i += 2 {
		n.attrs[i] = x.local(n.attrs[i])
	}
}

func (x *cfgXMLScan) local(qname string) string {
	p, l, ok := strings.Cut(qname, ":")
	if !ok || l == "" || strings.IndexByte(l, ':') >= 0 || !configXMLNameStart(l) {
		return qname
	}
	for _, b := range x.ns {
		if b == p {
			return l
		}
	}
	if p == "xml" {
		return l
	}
	return qname
}

// prolog reads the XML declaration as libxml2 checks it: version 1.x,
// then encoding and standalone, in that order, each after white space.
// UTF-8, Latin-1 and ASCII are read here; another encoding is left to a
// real uWSGI (libxml2 has iconv).
func (x *cfgXMLScan) prolog() error {
	d := x.d[x.i:]
	if !bytes.HasPrefix(d, []byte("<?xml")) || len(d) > 5 && !configXMLSpace(d[5]) && d[5] != '?' {
		return nil
	}
	x.decl = x.i
	end := bytes.Index(d, []byte("?>"))
	if end < 0 {
		return nil // the scan reports it
	}
	rest := string(d[5:end])
	pseudo := func(name string) (string, bool) {
		v := strings.TrimLeft(rest, " \t\r\n")
		if len(v) == len(rest) || !strings.HasPrefix(v, name) {
			return "", false
		}
		v, ok := strings.CutPrefix(strings.TrimLeft(v[len(name):], " \t\r\n"), "=")
		if v = strings.TrimLeft(v, " \t\r\n"); !ok || v == "" || v[0] != '"' && v[0] != '\'' {
			return "", false
		}
		val, after, ok := strings.Cut(v[1:], v[:1])
		if ok {
			rest = after
		}
		return val, ok
	}
	ver, ok := pseudo("version")
	if num, one := strings.CutPrefix(ver, "1."); !ok || !one || strings.Trim(num, "0123456789") != "" {
		return x.fail(x.i, "Malformed declaration expecting version")
	}
	enc, named := pseudo("encoding")
	if sa, ok := pseudo("standalone"); ok && sa != "yes" && sa != "no" || strings.Trim(rest, " \t\r\n") != "" ||
		named && (enc == "" || (enc[0]|0x20 < 'a' || enc[0]|0x20 > 'z') || strings.Trim(enc, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "") {
		return x.fail(x.i, "malformed XML declaration")
	}
	switch strings.ToLower(enc) {
	case "", "utf-8", "utf8":
	case "us-ascii", "ascii":
		x.ascii = true
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "iso-ir-100", "cp819", "ibm819", "csisolatin1":
		x.latin1 = true
	default:
		return configUnsupported(x.t.errorf(x.i, "XML encoding %q is not supported", enc))
	}
	return nil
}

// validate checks every character once, so the scan can work on bytes:
// UTF-8 (unless Latin-1) of XML 1.0's characters.
func (x *cfgXMLScan) validate() error {
	for i := x.i; i < len(x.d); {
		r, n := rune(x.d[i]), 1
		if r >= utf8.RuneSelf && x.ascii {
			return x.fail(i, "byte 0x%x in a document declared ASCII", r)
		}
		if r >= utf8.RuneSelf && !x.latin1 {
			if r, n = utf8.DecodeRune(x.d[i:]); r == utf8.RuneError && n == 1 {
				return x.fail(i, "invalid UTF-8")
			}
		}
		if !configXMLChar(r) {
			return x.fail(i, "illegal character code %U", r)
		}
		i += n
	}
	return nil
}

func configXMLChar(r rune) bool {
	return r >= 0x20 && r < 0xd800 || r == '\t' || r == '\n' || r == '\r' ||
		r >= 0xe000 && r < 0xfffe || r >= 0x10000 && r <= utf8.MaxRune
}

func configXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// space skips white space and says whether there was any.
func (x *cfgXMLScan) space() bool {
	start := x.i
	for x.i < len(x.d) && configXMLSpace(x.d[x.i]) {
		x.i++
	}
	return x.i > start
}

// name reads a name of XML 1.0's name characters, at most 50,000 bytes
// as libxml2 reads them (what follows a longer one is an error).
func (x *cfgXMLScan) name() string {
	start := x.i
	for x.i < len(x.d) && x.i-start < 50000 {
		r, n := rune(x.d[x.i]), 1
		if r >= utf8.RuneSelf && !x.latin1 {
			r, n = utf8.DecodeRune(x.d[x.i:])
		}
		if !configXMLNameRune(r, x.i == start) {
			break
		}
		x.i += n
	}
	s, _ := x.decode(start, x.i, 'r')
	return s
}

// configXMLNameRanges are XML 1.0's name characters past ASCII, as pairs
// of first and last: those a name may start with, then the rest.
var configXMLNameRanges = [...]rune{0xc0, 0xd6, 0xd8, 0xf6, 0xf8, 0x2ff, 0x370, 0x37d, 0x37f, 0x1fff,
	0x200c, 0x200d, 0x2070, 0x218f, 0x2c00, 0x2fef, 0x3001, 0xd7ff, 0xf900, 0xfdcf, 0xfdf0, 0xfffd,
	0x10000, 0xeffff, 0xb7, 0xb7, 0x300, 0x36f, 0x203f, 0x2040}

func configXMLNameRune(r rune, first bool) bool {
	if r < utf8.RuneSelf {
		c := byte(r)
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' ||
			!first && (c >= '0' && c <= '9' || c == '-' || c == '.')
	}
	last := len(configXMLNameRanges)
	if first {
		last -= 6
	}
	for i := 0; i < last; i += 2 {
		if r >= configXMLNameRanges[i] && r <= configXMLNameRanges[i+1] {
			return true
		}
	}
	return false
}

func configXMLNameStart(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s != "" && r != ':' && configXMLNameRune(r, true)
}

// decode is text ('t'), an attribute value ('a') or raw content ('r') as
// libxml2 delivers it: references replaced (not in raw content), line ends
// read as \n, Latin-1 widened, and in an attribute white space as spaces.
func (x *cfgXMLScan) decode(start, end int, mode byte) (string, error) {
	out := make([]byte, 0, end-start)
	for i := start; i < end; i++ {
		c := x.d[i]
		switch {
		case c == '&' && mode != 'r':
			j := bytes.IndexByte(x.d[i:end], ';')
			if j < 0 {
				return "", x.fail(i, "invalid character entity %s (no semicolon)", configSnippet(x.d[i:end]))
			}
			r, ok := configXMLRef(string(x.d[i+1 : i+j]))
			if !ok {
				return "", x.fail(i, "invalid character entity %s", x.d[i:i+j+1])
			}
			out = utf8.AppendRune(out, r)
			i += j
			continue
		case c == ']' && mode == 't' && bytes.HasPrefix(x.d[i:end], []byte("]]>")):
			return "", x.fail(i, "sequence ']]>' not allowed in content")
		case c == '\r':
			if i+1 < end && x.d[i+1] == '\n' {
				continue
			}
			c = '\n'
		}
		if mode == 'a' && (c == '\n' || c == '\t') {
			c = ' '
		}
		if c >= utf8.RuneSelf && x.latin1 {
			out = utf8.AppendRune(out, rune(c))
		} else {
			out = append(out, c)
		}
	}
	return string(out), nil
}

// configXMLRef is the character a reference (between & and ;) stands for:
// a predefined entity or a character reference.
func configXMLRef(ref string) (rune, bool) {
	switch ref {
	case "lt":
		return '<', true
	case "gt":
		return '>', true
	case "amp":
		return '&', true
	case "apos":
		return '\'', true
	case "quot":
		return '"', true
	}
	num, ok := strings.CutPrefix(ref, "#")
	base := 10
	if h, hex := strings.CutPrefix(num, "x"); hex {
		num, base = h, 16
	}
	v, err := strconv.ParseUint(num, base, 32)
	return rune(v), ok && err == nil && configXMLChar(rune(v))
}

// charData is the text up to the next tag.
func (x *cfgXMLScan) charData() (*cfgXMLNode, error) {
	start := x.i
	x.i = len(x.d)
	if j := bytes.IndexByte(x.d[start:], '<'); j >= 0 {
		x.i = start + j
	}
	s, err := x.decode(start, x.i, 't')
	return &cfgXMLNode{kind: 't', text: s, off: start}, err
}

// delimited is a comment, CDATA section or processing instruction whose
// content starts skip bytes after start and ends at end.
func (x *cfgXMLScan) delimited(start, skip int, end string, kind byte) (*cfgXMLNode, error) {
	body := start + skip
	j := bytes.Index(x.d[body:], []byte(end))
	if j < 0 {
		return nil, x.fail(len(x.d), "unexpected EOF in %s", configSnippet(x.d[start:]))
	}
	if kind == 'm' && (bytes.Contains(x.d[body:body+j], []byte("--")) || j > 0 && x.d[body+j-1] == '-') {
		return nil, x.fail(start, `invalid sequence "--" not allowed in comments`)
	}
	x.i = body + j + len(end)
	s, _ := x.decode(body, body+j, 'r')
	return &cfgXMLNode{kind: kind, text: s, off: start}, nil
}

// procInst is <?target content?>; only the declaration may be named xml.
func (x *cfgXMLScan) procInst(start int) (*cfgXMLNode, error) {
	x.i += 2
	target := x.name()
	switch {
	case target == "":
		return nil, x.fail(x.i, "expected target name after <?")
	case strings.EqualFold(target, "xml") && start != x.decl:
		return nil, x.fail(start, "XML declaration allowed only at the start of the document")
	case x.i < len(x.d) && !configXMLSpace(x.d[x.i]) && !bytes.HasPrefix(x.d[x.i:], []byte("?>")):
		return nil, x.fail(x.i, "malformed processing instruction <?%s", target)
	}
	n, err := x.delimited(start, x.i-start, "?>", 'p')
	if n != nil {
		n.text = strings.TrimLeft(n.text, " \t\n")
	}
	return n, err
}

// doctype skips a <!DOCTYPE ...> and its internal subset: quoted strings,
// comments, processing instructions and nested declarations.
func (x *cfgXMLScan) doctype() error {
	depth := 0
	for i := x.i + 2; i < len(x.d); i++ {
		switch c := x.d[i]; {
		case c == '"' || c == '\'':
			j := bytes.IndexByte(x.d[i+1:], c)
			if j < 0 {
				i = len(x.d)
			}
			i += j + 1
		case bytes.HasPrefix(x.d[i:], []byte("<!--")), bytes.HasPrefix(x.d[i:], []byte("<?")):
			end := "-->"
			if x.d[i+1] == '?' {
				end = "?>"
			}
			j := bytes.Index(x.d[i:], []byte(end))
			if j < 0 {
				i = len(x.d)
			}
			i += j + len(end) - 1
		case c == '<':
			depth++
		case c == '>' && depth == 0:
			x.i = i + 1
			return nil
		case c == '>':
			depth--
		}
	}
	return x.fail(len(x.d), "unexpected EOF in the DOCTYPE")
}

// startTag reads <name attr="value" ...> or <name .../>, which also closes.
func (x *cfgXMLScan) startTag() (*cfgXMLNode, bool, error) {
	start := x.i
	x.i++
	n := &cfgXMLNode{kind: 'e', name: x.name(), off: start}
	if n.name == "" {
		return nil, false, x.fail(x.i, "expected element name after <")
	}
	var seen map[string]bool // past a few attributes: a hostile file may hold thousands
	for {
		sp := x.space()
		if x.i >= len(x.d) {
			return nil, false, x.fail(x.i, "unexpected EOF in <%s>", n.name)
		}
		switch c := x.d[x.i]; {
		case c == '>':
			x.i++
			return n, false, nil
		case c == '/':
			if x.i++; x.i < len(x.d) && x.d[x.i] == '>' {
				x.i++
				return n, true, nil
			}
			return nil, false, x.fail(x.i, "expected /> in element <%s>", n.name)
		}
		at := x.i
		name := x.name()
		if !sp || name == "" {
			return nil, false, x.fail(x.i, "attributes construct error in <%s>", n.name)
		}
		x.space()
		if x.i >= len(x.d) || x.d[x.i] != '=' {
			return nil, false, x.fail(x.i, "attribute %s in <%s> without a value", name, n.name)
		}
		x.i++
		x.space()
		var q byte
		if x.i < len(x.d) {
			q = x.d[x.i]
		}
		j := bytes.IndexByte(x.d[min(x.i+1, len(x.d)):], q)
		if q != '"' && q != '\'' || j < 0 {
			return nil, false, x.fail(x.i, "attribute %s in <%s>: value not quoted or not closed", name, n.name)
		}
		end := x.i + 1 + j
		if k := bytes.IndexByte(x.d[x.i:end], '<'); k >= 0 {
			return nil, false, x.fail(x.i+k, "unescaped < in the value of attribute %s", name)
		}
		v, err := x.decode(x.i+1, end, 'a')
		if err != nil {
			return nil, false, err
		}
		if len(n.attrs) == 16 {
			seen = map[string]bool{}
			for i := 0; i < len(n.attrs); i += 2 {
				seen[n.attrs[i]] = true
			}
		}
		dup := seen[name]
		if seen == nil {
			_, dup = n.attr(name)
		} else {
			seen[name] = true
		}
		if dup {
			return nil, false, x.fail(at, "attribute %s redefined", name)
		}
		n.attrs = append(n.attrs, name, v)
		x.i = end + 1
	}
}

// applyPasses runs uWSGI's three substitution passes over every option not
// executed yet: $(ENV), then @(file), then %(placeholder).
func (p *cfgParser) applyPasses() error {
	for _, sym := range []byte{'$', '@', '%'} {
		if err := p.applyPass(sym); err != nil {
			return err
		}
	}
	return nil
}

func (p *cfgParser) applyPass(sym byte) error {
	for i := range p.list {
		e := &p.list[i]
		if e.configured || e.null {
			continue
		}
		v, err := configExpand(e.Value, sym, &p.expandWork, func(key, cur string) (string, bool, error) {
			e.Value = cur // uWSGI updates the value in place: a self-reference sees it so far
			return p.resolve(sym, key)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", e.Src, err)
		}
		e.Value = v
	}
	return nil
}

func (p *cfgParser) resolve(sym byte, key string) (string, bool, error) {
	switch sym {
	case '$':
		v, ok := p.getenv(key)
		return v, ok, nil
	case '@':
		v, err := p.readRef(key)
		return v, err == nil, err
	}
	v, ok := p.placeholder(key)
	return v, ok, nil
}

// readRef is @(path): the file (or exec:// output) without one trailing
// newline or carriage return.
func (p *cfgParser) readRef(ref string) (string, error) {
	data, err := p.readConfig(ref)
	if err != nil {
		return "", fmt.Errorf("@(%s): %w", ref, err)
	}
	if n := len(data); n > 0 && (data[n-1] == '\n' || data[n-1] == '\r') {
		data = data[:n-1]
	}
	return string(data), nil
}

// placeholder is uwsgi_manage_placeholder: a plain name is the first option
// with that key; an expression with spaces is a token pipeline where numbers
// are literals, other words are placeholders ("" if missing), adjacent values
// concatenate, + - * / do 64-bit math on the running value and ++ -- step it.
func (p *cfgParser) placeholder(expr string) (string, bool) {
	if !strings.Contains(expr, " ") {
		return p.lookup(expr)
	}
	var cur *string
	op := byte(0)
	for _, tok := range strings.Split(expr, " ") {
		if tok == "" {
			continue
		}
		switch tok {
		case "+", "-", "*", "/":
			op = tok[0]
			continue
		case "++", "--":
			if cur != nil {
				s := strconv.FormatInt(configAtoi(*cur)+int64(44-int(tok[0])), 10) // '+' is 43, '-' is 45
				cur = &s
			}
			op = 0
			continue
		}
		val := tok
		if !configIsNumber(tok) {
			val, _ = p.lookup(tok)
		}
		s := configApply(cur, op, val)
		cur, op = &s, 0
	}
	if cur == nil {
		return "", false
	}
	return *cur, true
}

// configApply combines the running pipeline value with the next one.
func configApply(cur *string, op byte, val string) string {
	a := ""
	if cur != nil {
		a = *cur
	}
	x, y := configAtoi(a), configAtoi(val)
	switch op {
	case '+':
		return strconv.FormatInt(x+y, 10)
	case '-':
		return strconv.FormatInt(x-y, 10)
	case '*':
		return strconv.FormatInt(x*y, 10)
	case '/':
		if y == 0 {
			return "0"
		}
		return strconv.FormatInt(x/y, 10)
	}
	return a + val
}

// configIsNumber is uWSGI's is_a_number: only digits (the empty string counts).
func configIsNumber(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// configExpand is uwsgi_apply_config_pass for one value: find sym(...) with
// balanced parentheses, replace it when resolve knows the key, and rescan the
// new value from index 1 (uWSGI resets its index to 0 and then increments it,
// so a replacement starting the value is not expanded again). resolve gets the
// key and the value as expanded so far. Unlike uWSGI it stops a
// self-referencing value instead of looping forever, bounds the quadratic
// rescanning, and reports an unterminated reference.
func configExpand(v string, sym byte, work *int, resolve func(key, cur string) (string, bool, error)) (string, error) {
	state, depth, keyStart, rounds := 0, 0, 0, 0
	for j := 0; j < len(v); j++ {
		c := v[j]
		switch {
		case c == sym:
			state = 1
		case c == '(' && state == 1:
			state, depth, keyStart = 2, 0, j+1
		case state >= 2 && c == '(':
			depth++
		case state >= 2 && c == ')' && depth > 0:
			depth--
		case state >= 2 && c == ')':
			state = 0
			if j == keyStart { // "%()" is left alone
				continue
			}
			val, ok, err := resolve(v[keyStart:j], v)
			if err != nil || !ok {
				if err != nil {
					return "", err
				}
				continue
			}
			rounds, *work = rounds+1, *work+len(v)+len(val)
			if rounds > configMaxExpansions || len(v)-(j+1-keyStart+2)+len(val) > configMaxValueSize {
				return "", fmt.Errorf("expansion of %c(%s) does not terminate (self-referencing placeholder?)", sym, v[keyStart:j])
			}
			if *work > configMaxExpandWork {
				return "", fmt.Errorf("expanding %c(%s): substitutions too expensive (over %d MiB rescanned)", sym, v[keyStart:j], configMaxExpandWork>>20)
			}
			v = v[:keyStart-2] + val + v[j+1:]
			j = 0
		case state >= 2:
		default:
			state = 0
		}
	}
	if state >= 2 {
		kind := map[byte]string{'%': "placeholder", '$': "environment reference", '@': "file reference"}[sym]
		return "", fmt.Errorf("unterminated %s %s", kind, configShorten(v[keyStart-2:]))
	}
	return v, nil
}

func configShorten(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// applyInherit is the part of uwsgi_configure that matters for the list:
// each inherit option, in list order (including ones that inherited files
// add), appends its file's options at the end, after the substitution passes.
func (p *cfgParser) applyInherit() error {
	for i := 0; i < len(p.list); i++ {
		e := p.list[i]
		if e.Key != "inherit" || e.configured || e.null {
			continue
		}
		p.list[i].configured = true
		file, _, _ := configSplitSection(e.Value)
		id := p.fileID(file)
		for _, c := range e.chain {
			if c == id {
				return fmt.Errorf("%s: inherit loop: %s inherits itself", e.Src, e.Value)
			}
		}
		chain := append(append([]string(nil), e.chain...), id)
		if err := p.loadByExtension(e.Value, e.Src, chain); err != nil {
			return err
		}
	}
	return nil
}
