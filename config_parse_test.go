package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// configKnownTable is a small stand-in for the program's option table:
// name -> is a flag.
var configKnownTable = map[string]bool{
	"ini": false, "xml": false, "yaml": false, "yml": false, "json": false, "js": false,
	"include": false, "inherit": false, "config": false, "set": false, "set-placeholder": false,
	"set-ph": false, "socket": false, "processes": false, "workers": false, "chdir": false,
	"name": false, "env": false, "master": true, "show-config": true, "strict": true,
	"vacuum": true, "for": false, "endfor": true, "if-env": false, "endif": true, "print": false,
	"module": false, "http": false, "clock": false,
}

func configKnown(name string) (bool, bool) {
	flag, ok := configKnownTable[name]
	return ok, flag
}

// configWrite creates files (name -> content) under a fresh temp dir.
func configWrite(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func configSpec(dir string, env ...string) ParseSpec {
	return ParseSpec{Known: configKnown, Environ: env, Cwd: dir, BinaryPath: "/usr/bin/uwsgi-core", Version: "2.0.21-debian"}
}

// configPairs renders the list as "k=v" strings for compact comparisons.
func configPairs(o *Options) []string {
	out := []string{}
	for _, op := range o.List {
		out = append(out, op.Key+"="+op.Value)
	}
	return out
}

func configMustParse(t *testing.T, args []string, spec ParseSpec) *Options {
	t.Helper()
	o, err := ParseArgs(args, spec)
	if err != nil {
		t.Fatalf("ParseArgs(%q): %v", args, err)
	}
	return o
}

func TestConfigOptionsAccessors(t *testing.T) {
	o := &Options{List: []Option{
		{Key: "socket", Value: ":1"}, {Key: "s", Value: ":2"}, {Key: "master", Value: ""},
		{Key: "vacuum", Value: "OFF"}, {Key: "processes", Value: " 12abc"}, {Key: "bad", Value: "x"},
		{Key: "enable-threads", Value: "0"}, {Key: "lazy", Value: "true"},
	}}
	if v, ok := o.Last("socket", "s"); !ok || v != ":2" {
		t.Errorf("Last = %q %v", v, ok)
	}
	if got := o.All("s", "socket"); !reflect.DeepEqual(got, []string{":1", ":2"}) {
		t.Errorf("All = %q", got)
	}
	for name, want := range map[string]bool{"master": true, "vacuum": false, "enable-threads": false, "lazy": true, "missing": false} {
		if got := o.Flag(name); got != want {
			t.Errorf("Flag(%s) = %v", name, got)
		}
	}
	if o.Int(7, "processes") != 12 || o.Int(7, "bad") != 0 || o.Int(7, "nope") != 7 {
		t.Errorf("Int: %d %d %d", o.Int(7, "processes"), o.Int(7, "bad"), o.Int(7, "nope"))
	}
	if !o.Has("s") || o.Has("nope") {
		t.Error("Has")
	}
	var nilOpts *Options
	if nilOpts.Has("x") || nilOpts.All("x") != nil {
		t.Error("nil Options")
	}
}

func TestConfigINI(t *testing.T) {
	cases := []struct {
		name, text, section string
		want                []string
	}{
		{"basic", "[uwsgi]\nsocket = :3031\nmaster = true\n", "", []string{"socket=:3031", "master=true"}},
		{"comments and blanks", "; c\n# c\n[uwsgi]\n\n  ; indented comment\nk=v\n", "", []string{"k=v"}},
		{"no inline comments", "[uwsgi]\nquoted = \"abc\" ; not a comment\n", "", []string{`quoted="abc" ; not a comment`}},
		{"key without value", "[uwsgi]\nnovalue\n", "", []string{"novalue="}},
		{"repeated keys", "[uwsgi]\na=1\na=2\n", "", []string{"a=1", "a=2"}},
		{"other sections ignored", "[other]\na=1\n[uwsgi]\nb=2\n[x]\nc=3\n[uwsgi]\nd=4", "", []string{"b=2", "d=4"}},
		{"section asked", "[uwsgi]\na=1\n[dev]\nb=2\n", "dev", []string{"b=2"}},
		{"first equals splits", "[uwsgi]\nenv = A=B=C\n", "", []string{"env=A=B=C"}},
		{"crlf and tabs", "[uwsgi]\r\n\tk\t=\tv \r\n", "", []string{"k=v"}},
		{"header last byte dropped", "[uwsgi\nk=v\n", "uwsg", []string{"k=v"}},
		{"empty", "", "", []string{}},
		{"no trailing newline", "[uwsgi]\nk=v", "", []string{"k=v"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts, err := configParseINI("t.ini", []byte(c.text), c.section)
			if err != nil {
				t.Fatal(err)
			}
			got := configPairs(&Options{List: opts})
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %q want %q", got, c.want)
			}
		})
	}
}

func TestConfigINISrcLines(t *testing.T) {
	opts, err := configParseINI("a.ini", []byte("[uwsgi]\n\na=1\n; c\nb=2\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if opts[0].Src != "a.ini:3" || opts[1].Src != "a.ini:5" {
		t.Errorf("src %q %q", opts[0].Src, opts[1].Src)
	}
}

func TestConfigSkeletonSymlinks(t *testing.T) {
	dir := configWrite(t, map[string]string{"app.skel": "[uwsgi]\nvassal_name = %n\nname = %(vassal_name)\np = %p\n"})
	for _, n := range []string{"app1.ini", "app2.ini"} {
		if err := os.Symlink("app.skel", filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"app1", "app2"} {
		o := configMustParse(t, []string{"--ini", n + ".ini"}, configSpec(dir))
		if v, _ := o.Last("name"); v != n {
			t.Errorf("%s: name = %q", n, v)
		}
		if v, _ := o.Last("p"); v != dir+"/"+n+".ini" {
			t.Errorf("%s: %%p = %q (a symlink must not be resolved)", n, v)
		}
	}
}

func TestConfigIncludeMagicDescribesIncludedFile(t *testing.T) {
	dir := configWrite(t, map[string]string{
		"main.ini":    "[uwsgi]\ninclude = sub/inc.ini\nmine = %n\n",
		"sub/inc.ini": "[uwsgi]\ninc = %n %N %c\n",
	})
	o := configMustParse(t, []string{"--ini", "main.ini"}, configSpec(dir))
	want := []string{"ini=main.ini", "include=sub/inc.ini", "inc=inc main sub", "mine=main"}
	if got := configPairs(o); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestConfigFormatsAgree(t *testing.T) {
	dir := configWrite(t, map[string]string{
		"a.ini":  "[uwsgi]\nsocket = :3031\nmaster = true\nenv = A=1\nenv = B=2\n",
		"a.json": `{"uwsgi": {"socket": ":3031", "master": "true", "env": ["A=1", "B=2"]}}`,
		"a.xml":  "<uwsgi><socket>:3031</socket><master>true</master><env>A=1</env><env>B=2</env></uwsgi>",
		"a.yaml": "uwsgi:\n  socket: :3031\n  master: true\n  env:\n    - A=1\n    - B=2\n",
		"a.yml":  "uwsgi:\n  socket: \":3031\"\n  master: true\n  env: [A=1, 'B=2']\n",
	})
	want := []string{"socket=:3031", "master=true", "env=A=1", "env=B=2"}
	for _, f := range []string{"a.ini", "a.json", "a.xml", "a.yaml", "a.yml"} {
		o := configMustParse(t, []string{f}, configSpec(dir))
		if got := configPairs(o); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %q want %q", f, got, want)
		}
	}
}

func TestConfigErrorsAreOneLine(t *testing.T) {
	dir := configWrite(t, map[string]string{
		"app.ini":   "[uwsgi]\n\n\n\n\n\n\n\n\n\n\nname = %(foo\n",
		"bad.json":  "{\"uwsgi\": {\"a\": \n",
		"bad.xml":   "<uwsgi><a>\n</b></uwsgi>",
		"bin.ini":   "[uwsgi]\nk=\x00\x01\x02",
		"loop.ini":  "[uwsgi]\ninclude = loop2.ini\n",
		"loop2.ini": "[uwsgi]\ninclude = loop.ini\n",
		"self.ini":  "[uwsgi]\na = x%(a)\n",
		"set.ini":   "[uwsgi]\nset = novalue\n",
	})
	cases := map[string]string{
		"app.ini":     "app.ini:12: unterminated placeholder %(foo",
		"bad.json":    "bad.json:2: parse error: premature EOF",
		"bad.xml":     "bad.xml:2: XML error:",
		"bin.ini":     "bin.ini:2: binary data",
		"loop.ini":    "include loop",
		"self.ini":    "self.ini:2: expansion of %(a) does not terminate",
		"set.ini":     "set.ini:2: invalid placeholder/--set value",
		"missing.ini": "no such file or directory",
	}
	for file, want := range cases {
		_, err := ParseArgs([]string{file}, configSpec(dir))
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), want) || strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("%s: error %v, want it to contain %q on one line", file, err, want)
		}
	}
}

var configUpdate = flag.Bool("config-update", false, "rewrite testdata/config golden files")

// configCase is one directory of testdata/config/corpus: config files, an
// "args" file (one argument per line), an optional "env" file (one VAR=value
// per line) and the golden "want.show" (ShowConfig output, the case directory
// written as $DIR). A "nouwsgi" file explains why uwsgi-core differs on it.
type configCase struct {
	name, dir string
	args, env []string
}

func configCorpus(t *testing.T) []configCase {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("testdata", "config", "corpus"))
	if err != nil {
		t.Fatal(err)
	}
	if root, err = filepath.EvalSymlinks(root); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var cases []configCase
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c := configCase{name: e.Name(), dir: filepath.Join(root, e.Name())}
		c.args = configLines(t, filepath.Join(c.dir, "args"))
		c.env = append([]string{"HOME=/home/cfgtest", "PATH=/usr/bin:/bin"}, configLines(t, filepath.Join(c.dir, "env"))...)
		cases = append(cases, c)
	}
	if len(cases) == 0 {
		t.Fatal("empty corpus")
	}
	return cases
}

func configLines(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// configOurs runs ParseArgs on a corpus case and returns ShowConfig's output
// (or the error text) with the case directory replaced by $DIR.
func configOurs(c configCase) string {
	o, err := ParseArgs(c.args, configSpec(c.dir, c.env...))
	out := ""
	if err != nil {
		out = "error: " + err.Error() + "\n"
	} else {
		out = ShowConfig(o)
	}
	return strings.ReplaceAll(out, c.dir, "$DIR")
}

func TestConfigGolden(t *testing.T) {
	for _, c := range configCorpus(t) {
		t.Run(c.name, func(t *testing.T) {
			got := configOurs(c)
			golden := filepath.Join(c.dir, "want.show")
			if *configUpdate {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("ShowConfig differs from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

// configShowBlock extracts the "key = value" lines between uWSGI's
// --show-config markers.
func configShowBlock(out string) ([]string, bool) {
	var lines []string
	in := false
	for _, l := range strings.Split(out, "\n") {
		switch {
		case l == ";uWSGI instance configuration":
			in = true
		case l == ";end of configuration":
			return lines, in
		case in && l != "[uwsgi]":
			lines = append(lines, l)
		}
	}
	return nil, false
}

const configUWSGI = "/usr/bin/uwsgi-core"

// TestConfigShowConfigMatchesUWSGI runs uwsgi-core on every corpus case and
// compares its --show-config block with ours. uwsgi-core is stopped right
// after printing it by an unknown --clock, which it checks next.
func TestConfigShowConfigMatchesUWSGI(t *testing.T) {
	if _, err := os.Stat(configUWSGI); err != nil {
		t.Skipf("%s is not installed (apt-get install uwsgi-core): differential test skipped", configUWSGI)
	}
	const clock = "cfgtest-no-such-clock"
	for _, c := range configCorpus(t) {
		t.Run(c.name, func(t *testing.T) {
			if why, err := os.ReadFile(filepath.Join(c.dir, "nouwsgi")); err == nil {
				t.Skipf("known difference: %s", strings.TrimSpace(string(why)))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, configUWSGI, append([]string{"--show-config", "--clock", clock}, c.args...)...)
			cmd.Dir, cmd.Env = c.dir, c.env
			out, _ := cmd.CombinedOutput()
			theirs, ok := configShowBlock(string(out))
			if !ok {
				t.Fatalf("no --show-config block from uwsgi-core:\n%s", out)
			}
			// Drop the two lines our harness added to uwsgi-core's command line
			// (after the environment's options, before the rest).
			i := 0
			for i+1 < len(theirs) && (theirs[i] != "show-config = true" || theirs[i+1] != "clock = "+clock) {
				i++
			}
			if i+1 >= len(theirs) {
				t.Fatalf("harness options missing from uwsgi-core's output: %q", theirs)
			}
			theirs = append(theirs[:i:i], theirs[i+2:]...)
			o, err := ParseArgs(c.args, configSpec(c.dir, c.env...))
			if err != nil {
				t.Fatalf("ParseArgs: %v (uwsgi-core accepted it)", err)
			}
			ours, _ := configShowBlock(ShowConfig(o))
			if !reflect.DeepEqual(ours, theirs) {
				t.Errorf("differs from uwsgi-core\n%s", configDiff(ours, theirs))
			}
		})
	}
}

// configDiff shows both lists side by side from the first difference.
func configDiff(ours, theirs []string) string {
	i := 0
	for i < len(ours) && i < len(theirs) && ours[i] == theirs[i] {
		i++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "first difference at line %d\n", i+1)
	for j := i; j < len(ours) || j < len(theirs); j++ {
		var a, c string
		if j < len(ours) {
			a = ours[j]
		}
		if j < len(theirs) {
			c = theirs[j]
		}
		fmt.Fprintf(&b, "  ours %-40q uwsgi %q\n", a, c)
	}
	return b.String()
}

func TestConfigExpand(t *testing.T) {
	vars := map[string]string{"foo": "1", "a": "", "b": "B", "self": "%(self)", "pct": "x%(b)", "sp": "a b"}
	resolve := func(k, _ string) (string, bool, error) {
		v, ok := vars[k]
		return v, ok, nil
	}
	cases := []struct{ in, want, err string }{
		{"plain", "plain", ""},
		{"%(foo)", "1", ""},
		{"<%(foo)%(foo)>", "<11>", ""},
		{"%(undefined) stays", "%(undefined) stays", ""},
		{"%() stays", "%() stays", ""},
		{"%(a)%(b)", "%(b)", ""}, // uWSGI rescans from index 1 after a replacement
		{"x%(a)%(b)", "xB", ""},
		{"%(pct)", "xB", ""},       // ...so a replacement is expanded again past index 0
		{"%(self)", "%(self)", ""}, // ...but not at index 0
		{"y%(pct)", "yxB", ""},
		{"%(f(o)o)", "%(f(o)o)", ""}, // balanced parentheses belong to the key
		{"%(x %(foo)", "%(x 1", ""},  // a new '%' restarts the scan
		{"50% done", "50% done", ""},
		{"%%(foo)", "%1", ""},
		{"%(foo", "", "unterminated placeholder %(foo"},
		{"%(foo(bar)", "", "unterminated placeholder %(foo(bar)"},
		{"x%(self)", "", "does not terminate"},
	}
	for _, c := range cases {
		work := 0
		got, err := configExpand(c.in, '%', &work, resolve)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestConfigPlaceholderPipeline(t *testing.T) {
	p, _ := newCfgParser(ParseSpec{Cwd: "/"})
	for _, kv := range [][2]string{{"processes", "2"}, {"cores", "8"}, {"n", "-5"}, {"big", "9223372036854775807"}, {"flag", ""}} {
		p.list = append(p.list, cfgEntry{Option: Option{Key: kv[0], Value: kv[1]}})
	}
	p.list = append(p.list, cfgEntry{Option: Option{Key: "master", Value: "true"}, null: true})
	cases := map[string]string{
		"processes cores + 2": "30", // "2" "8" concatenate to 28
		"processes * cores":   "16",
		"cores / 0":           "0",
		"cores / 3":           "2",
		"cores - 10":          "-2",
		"n + 1":               "-4",
		"cores ++":            "9",
		"cores -- --":         "6",
		"missing + 1":         "1",
		"big + 1":             "-9223372036854775808",
		"processes   cores":   "28",
		"-1 + 1":              "1", // "-1" is not a number for uWSGI: a missing placeholder
	}
	for expr, want := range cases {
		if got, ok := p.placeholder(expr); !ok || got != want {
			t.Errorf("%%(%s) = %q %v, want %q", expr, got, ok, want)
		}
	}
	if _, ok := p.placeholder("+ +"); ok {
		t.Error("an expression of operators only must stay unexpanded")
	}
	if _, ok := p.placeholder("master"); ok {
		t.Error("a command-line flag has no value to substitute")
	}
	if v, ok := p.placeholder("flag"); !ok || v != "" {
		t.Error("an empty value is still a value")
	}
}

func TestConfigMagicTable(t *testing.T) {
	if got := configDJB33x("/tmp/u2/t.ini"); got != "D0692DDE" { // printed by uwsgi-core 2.0.21
		t.Errorf("%%j = %s", got)
	}
	if got := configDJB33x("/tmp/\xe9.ini"); got != configDJB33x("/tmp/\xe9.ini") || len(got) != 8 {
		t.Errorf("%%j high bytes = %s", got)
	}
	dir := configWrite(t, map[string]string{"a.b.ini": "[uwsgi]\nm = %i|%k|%u|%g|%h|%U|%G|%e|%n|%z|%%|%\n"})
	o := configMustParse(t, []string{"--ini", "a.b.ini"}, configSpec(dir))
	st, err := os.Lstat(filepath.Join(dir, "a.b.ini"))
	if err != nil {
		t.Fatal(err)
	}
	ino, _ := configInode(st)
	host, _ := os.Hostname()
	v, _ := o.Last("m")
	parts := strings.Split(v, "|")
	if len(parts) != 12 {
		t.Fatalf("m = %q", v)
	}
	want := []string{strconv.FormatUint(ino, 10), strconv.Itoa(runtime.NumCPU()), strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid()), host}
	if !reflect.DeepEqual(parts[:5], want) || parts[7] != "ini" || parts[8] != "a.b" || parts[9] != "" || parts[10] != "%" || parts[11] != "" {
		t.Errorf("magic = %q, want prefix %q", parts, want)
	}
	if parts[5] == "" || parts[6] == "" {
		t.Errorf("user/group names empty: %q", parts)
	}
}

func TestConfigMagicSubXMLKeepsTrailingPercent(t *testing.T) {
	p, _ := newCfgParser(ParseSpec{Cwd: "/"})
	for _, c := range []struct {
		in      string
		eofEats bool
		want    string
	}{
		{"a%", true, "a"}, {"a%", false, "a%"}, {"a%\nb", true, "ab"}, {"%%%(x)%Q", true, "%%(x)"},
	} {
		got, _, err := p.magicSub([]byte(c.in), c.eofEats)
		if err != nil || string(got) != c.want {
			t.Errorf("magicSub(%q, %v) = %q %v, want %q", c.in, c.eofEats, got, err, c.want)
		}
	}
}

func TestConfigLineNumbersSurviveEatenNewlines(t *testing.T) {
	dir := configWrite(t, map[string]string{"a.ini": "[uwsgi]\nx = 1%\ny = 2\nz = %(oops\n"})
	_, err := ParseArgs([]string{"a.ini"}, configSpec(dir))
	if err == nil || !strings.HasPrefix(err.Error(), "a.ini:4: ") {
		t.Errorf("error %v, want it at a.ini:4", err)
	}
}

func TestConfigCommandLine(t *testing.T) {
	dir := configWrite(t, map[string]string{"a.ini": "[uwsgi]\nk = v\n", "--b.ini": "[uwsgi]\nb = %N|%n\n"})
	o := configMustParse(t, []string{"--master", "a.ini", "--socket", ":1", "--processes=2", "--", "--b.ini", "[skipped]"},
		configSpec(dir, "UWSGI_HTTP_SOCKET=:80", "UWSGI_EMPEROR_FD=3", "UWSGI_VASSALS_DIR=/x", "OTHER=1"))
	// Trailing files load after all options and never set the uppercase magic variables.
	want := []string{"http-socket=:80", "master=true", "socket=:1", "processes=2", "k=v", "b=|--b"}
	if got := configPairs(o); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
	if o.List[0].Src != "environment" || o.List[1].Src != "command line" || o.List[4].Src != "a.ini:2" {
		t.Errorf("sources: %+v", o.List)
	}
	errs := map[string][]string{
		"unrecognized option '--nope'":                {"--nope"},
		"unrecognized option '-s'":                    {"-s", ":1"},
		"option '--socket' requires an argument":      {"--socket"},
		"option '--master' doesn't allow an argument": {"--master=1"},
		"unable to load configuration from x.conf":    {"x.conf"},
	}
	for want, args := range errs {
		if _, err := ParseArgs(args, configSpec(dir)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", args, err, want)
		}
	}
	// Without a Known table every option is accepted; a following non-option is its value.
	o = configMustParse(t, []string{"--anything", "x", "--flag", "--last"}, ParseSpec{Cwd: dir})
	if got := configPairs(o); !reflect.DeepEqual(got, []string{"anything=x", "flag=true", "last=true"}) {
		t.Errorf("no Known: %q", got)
	}
}

func TestConfigSetPlaceholderAndStrict(t *testing.T) {
	dir := configWrite(t, map[string]string{
		"a.ini": "[uwsgi]\nset-ph = ph=1\nuse = %(ph)\n",
		"b.ini": "[uwsgi]\nset-placeholder = socket=x\n",
		"c.ini": "[uwsgi]\nstrict = true\nset-ph = ok=1\nsocket = %(ok)\n",
		"d.ini": "[uwsgi]\nstrict = true\nunknown-thing = 1\n",
	})
	o := configMustParse(t, []string{"a.ini"}, configSpec(dir))
	if v, _ := o.Last("use"); v != "1" {
		t.Errorf("set-ph: use = %q", v)
	}
	if _, err := ParseArgs([]string{"b.ini"}, configSpec(dir)); err == nil || !strings.Contains(err.Error(), "you cannot use socket as a placeholder") {
		t.Errorf("set-placeholder of an option: %v", err)
	}
	if _, err := ParseArgs([]string{"c.ini"}, configSpec(dir)); err != nil {
		t.Errorf("strict with set-ph: %v", err)
	}
	if _, err := ParseArgs([]string{"d.ini"}, configSpec(dir)); err == nil || !strings.Contains(err.Error(), "d.ini:3: [strict-mode] unknown config directive: unknown-thing") {
		t.Errorf("strict: %v", err)
	}
}

func TestConfigLogicErrorsAndScopes(t *testing.T) {
	dir := configWrite(t, map[string]string{
		"rec.ini":    "[uwsgi]\nfor = a b\nif-env = HOME\nx = 1\nendif\n",
		"inc.ini":    "[uwsgi]\nfor = a b\ninclude = body.ini\nendfor\n",
		"body.ini":   "[uwsgi]\nitem = %n\nendfor\nafter = 1\n",
		"glob.ini":   "[uwsgi]\nfor-glob = g/*.txt\nf = %(_)\nendfor\nfor-glob = nomatch*\nn = %(_)\nendfor\n",
		"g/1.txt":    "",
		"g/2.txt":    "",
		"lines.ini":  "[uwsgi]\nfor-readline = lines.txt\nl = %(_)\nendfor\n",
		"lines.txt":  "one\r\ntwo\n\nthree",
		"host.ini":   "[uwsgi]\nif-hostname = %h\nh = yes\nendif\nif-not-hostname = %h\nh = no\nendif\n",
		"reload.ini": "[uwsgi]\nif-reload =\nr = reload\nendif\nif-not-reload =\nr = fresh\nendif\n",
	})
	if _, err := ParseArgs([]string{"rec.ini"}, configSpec(dir, "HOME=/")); err == nil || !strings.Contains(err.Error(), "rec.ini:3: recursive logic in options is not supported (option = if-env)") {
		t.Errorf("nested logic: %v", err)
	}
	// Inside a logic body uWSGI adds options unfiltered: the included file's
	// own endfor does not end the loop and its options repeat per item.
	o := configMustParse(t, []string{"inc.ini"}, configSpec(dir))
	if got := o.All("item"); !reflect.DeepEqual(got, []string{"body", "body"}) {
		t.Errorf("include in for: %q (%q)", got, configPairs(o))
	}
	o = configMustParse(t, []string{"glob.ini"}, configSpec(dir))
	if got := append(o.All("f"), o.All("n")...); !reflect.DeepEqual(got, []string{"g/1.txt", "g/2.txt", "nomatch*"}) {
		t.Errorf("for-glob: %q", got)
	}
	o = configMustParse(t, []string{"lines.ini"}, configSpec(dir))
	if got := o.All("l"); !reflect.DeepEqual(got, []string{"one", "two", "", "three"}) {
		t.Errorf("for-readline: %q", got)
	}
	o = configMustParse(t, []string{"host.ini"}, configSpec(dir))
	if got := o.All("h"); !reflect.DeepEqual(got, []string{"yes"}) {
		t.Errorf("if-hostname: %q", got)
	}
	o = configMustParse(t, []string{"reload.ini"}, configSpec(dir, "UWSGI_RELOADS=1"))
	if got := o.All("r"); !reflect.DeepEqual(got, []string{"reload"}) {
		t.Errorf("if-reload: %q", got)
	}
}

func TestConfigInheritOrderAndLoops(t *testing.T) {
	dir := configWrite(t, map[string]string{
		"main.ini": "[uwsgi]\ninherit = %(tpl)\nchdir = /main\nset = tpl=t.ini\n",
		"t.ini":    "[uwsgi]\nchdir = /tpl\nenv = T=%(x)\n",
		"l1.ini":   "[uwsgi]\ninherit = l2.ini\n",
		"l2.ini":   "[uwsgi]\ninherit = l1.ini\n",
	})
	// The inherit value itself goes through the passes (it runs late), its content does not.
	o := configMustParse(t, []string{"main.ini"}, configSpec(dir))
	if v, _ := o.Last("chdir"); v != "/tpl" {
		t.Errorf("inherited scalar must win: chdir = %q", v)
	}
	if v, _ := o.Last("env"); v != "T=%(x)" {
		t.Errorf("inherited placeholders stay: env = %q", v)
	}
	if _, err := ParseArgs([]string{"l1.ini"}, configSpec(dir)); err == nil || !strings.Contains(err.Error(), "inherit loop") {
		t.Errorf("inherit loop: %v", err)
	}
}

func TestConfigAtFileAndExec(t *testing.T) {
	dir := configWrite(t, map[string]string{"v.txt": "value\n\n", "a.ini": "[uwsgi]\nf = @(v.txt)\nx = @(exec://printf 'out\\n')\nm = @(missing.txt)\n"})
	_, err := ParseArgs([]string{"a.ini"}, configSpec(dir, "PATH=/usr/bin:/bin"))
	if err == nil || !strings.Contains(err.Error(), "a.ini:4: @(missing.txt): ") {
		t.Fatalf("missing @() file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "missing.txt"), []byte("m"), 0o644)
	o := configMustParse(t, []string{"a.ini"}, configSpec(dir, "PATH=/usr/bin:/bin"))
	if got := configPairs(o); !reflect.DeepEqual(got, []string{"f=value\n", "x=out", "m=m"}) {
		t.Errorf("got %q", got)
	}
	o = configMustParse(t, []string{"--ini", "exec://printf '[uwsgi]\\nfrom = exec\\n'"}, configSpec(dir, "PATH=/usr/bin:/bin"))
	if v, _ := o.Last("from"); v != "exec" {
		t.Errorf("exec:// config: %q", configPairs(o))
	}
	if _, err := ParseArgs([]string{"--ini", "http://example.invalid/a.ini"}, configSpec(dir)); err == nil || !strings.Contains(err.Error(), "scheme is not supported") {
		t.Errorf("http scheme: %v", err)
	}
}

func TestConfigHostileFiles(t *testing.T) {
	dir := configWrite(t, map[string]string{"ok.ini": "[uwsgi]\nk = v\n"})
	huge := filepath.Join(dir, "huge.ini")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(100 << 20); err != nil { // sparse: no 100 MB written
		t.Fatal(err)
	}
	f.Close()
	if err := os.Mkdir(filepath.Join(dir, "dir.ini"), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.ini")
	if err := exec.Command("mkfifo", fifo).Run(); err != nil {
		t.Logf("mkfifo: %v (FIFO case skipped)", err)
		fifo = ""
	}
	cases := map[string]string{"huge.ini": "file too large", "dir.ini": "not a regular file", "fifo.ini": "not a regular file"}
	for file, want := range cases {
		if file == "fifo.ini" && fifo == "" {
			continue
		}
		start := time.Now()
		_, err := ParseArgs([]string{file}, configSpec(dir))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", file, err, want)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %v", file, d)
		}
	}
}

// TestConfigVanishingFile parses a file while another goroutine keeps
// deleting and recreating it: every attempt must end in a result or a clear
// error, never a hang or a panic.
func TestConfigVanishingFile(t *testing.T) {
	dir := configWrite(t, nil)
	path := filepath.Join(dir, "v.ini")
	tmp := filepath.Join(dir, "v.tmp")
	content := []byte("[uwsgi]\n" + strings.Repeat("key = some value here\n", 2000))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			os.Remove(path)
			if i%2 == 0 { // replaced whole, as editors and deploy tools do
				os.WriteFile(tmp, content, 0o644)
				os.Rename(tmp, path)
			}
		}
	}()
	okCount, errCount := 0, 0
	for i := 0; i < 300; i++ {
		o, err := ParseArgs([]string{"v.ini"}, configSpec(dir))
		switch {
		case err != nil:
			errCount++
			if !strings.Contains(err.Error(), "v.ini") {
				t.Errorf("error without the file name: %v", err)
			}
		case len(o.List) > 2001:
			t.Errorf("too many options: %d", len(o.List))
		default:
			okCount++
		}
	}
	close(stop)
	<-done
	t.Logf("%d parsed, %d clean errors", okCount, errCount)
}

func TestConfigJSONCases(t *testing.T) {
	cases := []struct{ name, text, section, want, err string }{
		{"comments", "/* c */ {\"uwsgi\": {// line\n\"a\": \"1\"}}", "", "a=1", ""},
		{"section", `{"x": {"a": 1}, "uwsgi": {"b": 2}}`, "x", "a=1", ""},
		{"empty object", `{"uwsgi": {}}`, "", "", ""},
		{"unicode escapes", `{"uwsgi": {"a": "\ud83d\ude00\u00e9"}}`, "", "a=😀é", ""},
		{"not an object", `{"uwsgi": "x"}`, "", "", "you must define a object named uwsgi in your JSON data"},
		{"top-level array", `[1]`, "", "", "you must define a object named uwsgi"},
		{"empty", ``, "", "", "premature EOF"},
		{"trailing garbage", `{"uwsgi": {}} x`, "", "", "trailing garbage"},
		{"bad number", `{"uwsgi": {"a": 01}}`, "", "", "expected ','"},
		{"bad escape", `{"uwsgi": {"a": "\q"}}`, "", "", "may not"},
		{"raw newline in string", "{\"uwsgi\": {\"a\": \"x\ny\"}}", "", "", "t.json:1: lexical error: invalid character inside string"},
		{"invalid utf8", "{\"uwsgi\": {\"a\": \"\xff\"}}", "", "", "invalid bytes in UTF8"},
		{"deep", strings.Repeat("[", 10000), "", "", "nesting deeper"},
		{"unterminated comment", `{"uwsgi": {} /*`, "", "", "unterminated comment"},
	}
	for _, c := range cases {
		opts, err := configParseJSON("t.json", []byte(c.text), c.section)
		configCheckCase(t, c.name, opts, err, c.want, c.err)
	}
}

// configCheckCase compares parser output with "k=v;k=v" or an error substring.
func configCheckCase(t *testing.T, name string, opts []Option, err error, want, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%s: error %v, want %q", name, err, wantErr)
		}
		return
	}
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	if got := strings.Join(configPairs(&Options{List: opts}), ";"); got != want {
		t.Errorf("%s: got %q want %q", name, got, want)
	}
}

func TestConfigXMLCases(t *testing.T) {
	cases := []struct{ name, text, id, want, err string }{
		{"root", "<uwsgi><a>1</a><b/></uwsgi>", "", "a=1;b=1", ""},
		{"first uwsgi child", "<r><x/><uwsgi><a>1</a></uwsgi><uwsgi><a>2</a></uwsgi></r>", "", "a=1", ""},
		{"id selects", "<r><uwsgi id='p'><a>1</a></uwsgi><uwsgi id='q'><a>2</a></uwsgi></r>", "q", "a=2", ""},
		{"no id on child matches any", "<r><uwsgi><a>1</a></uwsgi></r>", "q", "a=1", ""},
		{"root ignores id", "<uwsgi id='p'><a>1</a></uwsgi>", "q", "a=1", ""},
		{"first child text only", "<uwsgi><a>x<b/>y</a></uwsgi>", "", "a=x", ""},
		{"first child comment", "<uwsgi><a><!--c-->x</a></uwsgi>", "", "a=c", ""},
		{"first child element", "<uwsgi><a><b>x</b></a></uwsgi>", "", "a=", ""},
		{"app nested", "<uwsgi><app mountpoint='/m'>\n  <script>s.py</script></app></uwsgi>", "", "mount=/m=s.py;app=", ""},
		{"namespaced", "<uwsgi xmlns:n='u'><n:a>1</n:a></uwsgi>", "", "a=1", ""},
		{"latin1", "<?xml version='1.0' encoding='ISO-8859-1'?><uwsgi><a>\xe9</a></uwsgi>", "", "a=é", ""},
		{"wrong root", "<config><a>1</a></config>", "", "", "invalid xml root element, <uwsgi> expected"},
		{"empty", "", "", "", "no root element"},
		{"two roots", "<uwsgi/><uwsgi/>", "", "", "extra content"},
		{"unknown entity", "<uwsgi><a>&nope;</a></uwsgi>", "", "", "XML error"},
		{"unclosed", "<uwsgi><a>", "", "", "XML error"},
		{"garbage", "\x01\x02\x03", "", "", "t.xml:1:"},
	}
	for _, c := range cases {
		opts, err := configParseXML("t.xml", []byte(c.text), c.id)
		configCheckCase(t, c.name, opts, err, c.want, c.err)
	}
}

func TestConfigYAMLCases(t *testing.T) {
	cases := []struct{ name, text, section, want, err string }{
		{"basic", "uwsgi:\n  a: 1\n  b: two words\n", "", "a=1;b=two words", ""},
		{"section ends at dedent", "uwsgi:\n  a: 1\nother:\n  b: 2\n", "", "a=1", ""},
		{"section asked", "uwsgi:\n  a: 1\ndev:\n  b: 2\n", "dev", "b=2", ""},
		{"nested section not found", "x:\n  uwsgi:\n    a: 1\n", "", "", ""},
		{"sequence", "uwsgi:\n  env:\n    - A=1\n    - 'B=2'\n  x: y\n", "", "env=A=1;env=B=2;x=y", ""},
		{"sequence same indent", "uwsgi:\n  env:\n  - A=1\n", "", "env=A=1", ""},
		{"flow sequence", "uwsgi:\n  env: [A=1, \"B=2\" ]\n", "", "env=A=1;env=B=2", ""},
		{"empty value is no option", "uwsgi:\n  master:\n  a: 1\n", "", "a=1", ""},
		{"explicit empty string", "uwsgi:\n  a: \"\"\n", "", "a=", ""},
		{"comments", "# c\nuwsgi: # c\n  # c\n  a: 1 # c\n  b: x#y\n", "", "a=1;b=x#y", ""},
		{"tab separator", "uwsgi:\n  a:\tv\n", "", "a=v", ""},
		{"crlf", "uwsgi:\r\n  a: v\r\n", "", "a=v", ""},
		{"colon in value", "uwsgi:\n  socket: 127.0.0.1:3031\n  log: a: b\n", "", "socket=127.0.0.1:3031;log=a: b", ""},
		{"stops at non mapping line", "uwsgi:\n  a: 1\n  junk\n  b: 2\n", "", "a=1", ""},
		{"escapes", "uwsgi:\n  a: \"\\x41\\u00e9\\n\"\n", "", "a=Aé\n", ""},
		{"document marker", "---\nuwsgi:\n  a: 1\n", "", "a=1", ""},
		{"unterminated quote", "uwsgi:\n  a: \"x\n", "", "", "t.yml:2: unterminated quoted string"},
		{"block scalar", "uwsgi:\n  a: |\n    x\n", "", "", "block scalars"},
		{"bad flow", "uwsgi:\n  a: [x\n", "", "", "unterminated flow sequence"},
		{"bad escape", "uwsgi:\n  a: \"\\q\"\n", "", "", "invalid escape"},
	}
	for _, c := range cases {
		opts, err := configParseYAML("t.yml", []byte(c.text), c.section)
		configCheckCase(t, c.name, opts, err, c.want, c.err)
	}
}

// configTypicalINI is a realistic vassal: a dozen options, a few
// placeholders and magic variables, comments.
const configTypicalINI = `; vassal for the shop application
[uwsgi]
project = shop
base = /srv/%(project)
vassal_name = %n

chdir = %(base)
module = %(project).wsgi:application
home = %(base)/venv
master = true
processes = 4
threads = 2
socket = /run/uwsgi/%(vassal_name).sock
chmod-socket = 660
vacuum = true
harakiri = 30
max-requests = 5000
env = DJANGO_SETTINGS_MODULE=%(project).settings
env = LANG=en_US.UTF-8
logto = /var/log/uwsgi/%n.log
`

func BenchmarkConfigParseTypicalINI(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "shop.ini"), []byte(configTypicalINI), 0o644); err != nil {
		b.Fatal(err)
	}
	spec := configSpec(dir, "PATH=/usr/bin:/bin", "HOME=/root")
	args := []string{"--ini", "shop.ini"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseArgs(args, spec); err != nil {
			b.Fatal(err)
		}
	}
}

// Fuzz targets: no parser may panic or hang on any input, errors are one
// line, and every option carries a source.

func configFuzzCheck(t *testing.T, name string, opts []Option, err error) {
	if err != nil {
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Fatalf("multi-line error: %q", err)
		}
		return
	}
	for _, o := range opts {
		if !strings.HasPrefix(o.Src, name+":") {
			t.Fatalf("bad Src %q", o.Src)
		}
	}
}

func FuzzConfigINI(f *testing.F) {
	f.Add([]byte(configTypicalINI), "")
	f.Add([]byte("[uwsgi]\nk=v\n[x]\n[\n=\n"), "x")
	f.Fuzz(func(t *testing.T, data []byte, section string) {
		opts, err := configParseINI("f.ini", data, section)
		configFuzzCheck(t, "f.ini", opts, err)
	})
}

func FuzzConfigJSON(f *testing.F) {
	f.Add([]byte(`{"uwsgi": {"a": [1, true, null, "x\u00e9"], "b": {"c": 1.5e3}}}`), "")
	f.Add([]byte("/* c */ {\"x\": {\"a\": \"\\ud800\"}} // c"), "x")
	f.Fuzz(func(t *testing.T, data []byte, section string) {
		opts, err := configParseJSON("f.json", data, section)
		configFuzzCheck(t, "f.json", opts, err)
	})
}

func FuzzConfigXML(f *testing.F) {
	f.Add([]byte("<?xml version='1.0'?><r><uwsgi id='a'><x id='a'>1</x><app mountpoint='/'>s</app><![CDATA[c]]></uwsgi></r>"), "a")
	f.Add([]byte("<uwsgi><a><!--c--></a><b/></uwsgi>"), "")
	f.Fuzz(func(t *testing.T, data []byte, id string) {
		opts, err := configParseXML("f.xml", data, id)
		configFuzzCheck(t, "f.xml", opts, err)
	})
}

func FuzzConfigYAML(f *testing.F) {
	f.Add([]byte("uwsgi:\n  a: 1\n  env:\n    - x\n  l: [a, 'b', \"c\"]\n  q: \"\\u00e9\"\n"), "")
	f.Add([]byte("x:\n\tuwsgi:\n - a\n{a: b}\n"), "x")
	f.Fuzz(func(t *testing.T, data []byte, section string) {
		opts, err := configParseYAML("f.yml", data, section)
		configFuzzCheck(t, "f.yml", opts, err)
	})
}

// FuzzConfigSubst drives the magic-variable pass and the $ and % passes with
// placeholders defined by the input.
func FuzzConfigSubst(f *testing.F) {
	f.Add("%(a)%(b) %(a + 1) $(HOME) %%n %n", "1", "%(a)x")
	f.Add("x%(self)", "%(b", "y%(a)")
	f.Fuzz(func(t *testing.T, value, a, b string) {
		p, _ := newCfgParser(ParseSpec{Cwd: "/", Environ: []string{"HOME=/root"}})
		magic, _, err := p.magicSub([]byte(value), true)
		if err != nil {
			return
		}
		p.list = []cfgEntry{{Option: Option{Key: "a", Value: a, Src: "a"}}, {Option: Option{Key: "b", Value: b, Src: "b"}},
			{Option: Option{Key: "v", Value: string(magic), Src: "v"}}}
		for _, sym := range []byte{'$', '%'} { // '@' would read files named by the input
			if err := p.applyPass(sym); err != nil {
				if strings.ContainsAny(err.Error(), "\r\n") && !strings.ContainsAny(value+a+b, "\r\n") {
					t.Fatalf("multi-line error: %q", err)
				}
				return
			}
		}
		for _, e := range p.list {
			if len(e.Value) > configMaxValueSize {
				t.Fatalf("value grew to %d bytes", len(e.Value))
			}
		}
	})
}

// FuzzConfigArgs runs the whole pipeline on a fuzzed INI file (exec://
// disabled, so no input can run a command).
func FuzzConfigArgs(f *testing.F) {
	f.Add([]byte(configTypicalINI))
	f.Add([]byte("[uwsgi]\nfor = a b\nx = %(_)\nendfor\nif-env = HOME\ninclude = f.ini\nendif\ninherit = f.ini\nset = a=%(a)\n"))
	dir := f.TempDir()
	configNoExec.Store(true)
	f.Cleanup(func() { configNoExec.Store(false) })
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, "f.ini"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		o, err := ParseArgs([]string{"--ini", "f.ini"}, configSpec(dir, "HOME=/root"))
		if err != nil {
			return
		}
		_ = ShowConfig(o)
	})
}

func TestConfigOddArguments(t *testing.T) {
	dir := configWrite(t, map[string]string{"a.ini": "[uwsgi]\nk = v\n"})
	odd := [][]string{
		{""}, {":"}, {"::"}, {"a.ini:"}, {":x"}, {"-"}, {"[x"}, {"--ini="}, {"--ini=:"}, {"--ini", ":"},
		{"--ini", "exec://"}, {"--xml", "a.xml:"}, {"--json", ":"}, {"--include", ""}, {"--inherit", ""},
		{"--set", "="}, {"--set", "a"}, {"--for", "x", "--ini", "a.ini"}, {"--endif"}, {"--config", "a.ini"},
		{"--yaml", "/"}, {"--ini", "/dev/null"}, {"--ini", "a.ini:a.ini:"}, {"--="}, {"---"},
	}
	for _, args := range odd {
		o, err := ParseArgs(args, ParseSpec{Cwd: dir})
		if err == nil {
			_ = ShowConfig(o)
		} else if strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%q: multi-line error %q", args, err)
		}
	}
}

// TestConfigBudgets: inputs that would make uWSGI work (or loop) for a very
// long time end quickly with an error.
func TestConfigBudgets(t *testing.T) {
	big := strings.Repeat("x", 8<<20)
	dir := configWrite(t, map[string]string{
		"big.ini":    "[uwsgi]\nk = " + big + "\n",
		"loop.ini":   "[uwsgi]\nfor-times = 100\ninclude = big.ini\nendfor\n",
		"grow.ini":   "[uwsgi]\n" + strings.Repeat("g = %(p)%(p)%(p)%(p)%(p)%(p)%(p)%(p)\n", 2000) + "p = " + strings.Repeat("y", 20000) + "\n",
		"self.ini":   "[uwsgi]\nproject=5000%(project).settings\n",
		"fromat.ini": "[uwsgi]\n" + strings.Repeat("a = @(big.ini)\n", 100),
	})
	for _, f := range []string{"loop.ini", "grow.ini", "self.ini", "fromat.ini"} {
		start := time.Now()
		_, err := ParseArgs([]string{f}, configSpec(dir))
		if err == nil {
			t.Errorf("%s: no error", f)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", f, d)
		}
		t.Logf("%s: %v (%v)", f, configShorten(err.Error()), time.Since(start))
	}
}

// TestConfigManyOptionsStayLinear: the largest list a parse may build, every
// entry a placeholder lookup, must not go quadratic.
func TestConfigManyOptionsStayLinear(t *testing.T) {
	dir := configWrite(t, map[string]string{"m.ini": "[uwsgi]\na = 1\nfor-times = 99990\nx = %(a)%(b)%(_)\nendfor\nb = 2\n"})
	start := time.Now()
	o := configMustParse(t, []string{"m.ini"}, configSpec(dir))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
	if v, _ := o.Last("x"); v != "1299990" {
		t.Errorf("last x = %q", v)
	}
	dir = configWrite(t, map[string]string{"m.ini": "[uwsgi]\nfor-times = 200000\nx = 1\nendfor\n"})
	if _, err := ParseArgs([]string{"m.ini"}, configSpec(dir)); err == nil || !strings.Contains(err.Error(), "too many options") {
		t.Errorf("option cap: %v", err)
	}
}
