package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
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
