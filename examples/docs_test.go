// Package examples holds, beside the runnable programs, the tests that hold
// the repository's documentation (README.md and docs/*.md) to the truth.
package examples

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/staplerkit/ocsp/examples/internal/docblocks"
)

// repoRoot is the repository's root, which holds README.md and docs/.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// goFunc is a function of a _test.go file of the repository.
type goFunc struct {
	dir  string // the package's directory, relative to the root, with slashes
	file string // relative to the root
	name string
	body string // the text between the braces, with the function's indentation taken off
	decl *ast.FuncDecl
}

// testFuncs parses every _test.go file of the repository's four modules.
func testFuncs(t *testing.T, root string) []goFunc {
	t.Helper()
	var funcs []goFunc
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || fn.Body == nil {
				continue
			}
			body := string(src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset])
			funcs = append(funcs, goFunc{
				dir:  filepath.ToSlash(filepath.Dir(rel)),
				file: filepath.ToSlash(rel),
				name: fn.Name.Name,
				body: dedent(body),
				decl: fn,
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return funcs
}

// dedent takes one tab off each line of a function's body, and the
// newlines after the opening brace and before the closing one.
func dedent(body string) string {
	body = strings.TrimPrefix(body, "\n")
	var b strings.Builder
	for _, line := range strings.SplitAfter(body, "\n") {
		b.WriteString(strings.TrimPrefix(line, "\t"))
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

var outputComment = regexp.MustCompile(`(?m)^// (Unordered output|Output):`)

// exampleText is an Example's body as the docs show it: without its output
// comment, which ends it.
func exampleText(body string) string {
	if loc := outputComment.FindStringIndex(body); loc != nil {
		body = body[:loc[0]]
	}
	return strings.TrimRight(body, "\n") + "\n"
}

// readsDocs reports whether fn reads the docs: it calls into docblocks, or
// calls a function of its own package that does (at any depth), and it
// names the blocks it reads by its own name (t.Name() or its name quoted).
func readsDocs(fn goFunc, pkg []goFunc) bool {
	byName := map[string]goFunc{}
	for _, f := range pkg {
		byName[f.name] = f
	}
	seen := map[string]bool{}
	var calls func(f goFunc) bool
	calls = func(f goFunc) bool {
		if seen[f.name] {
			return false
		}
		seen[f.name] = true
		found := false
		ast.Inspect(f.decl.Body, func(n ast.Node) bool {
			if found {
				return false
			}
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := n.X.(*ast.Ident); ok && id.Name == "docblocks" {
					found = true
				}
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok {
					if g, ok := byName[id.Name]; ok && calls(g) {
						found = true
					}
				}
			}
			return !found
		})
		return found
	}
	return calls(fn) && (strings.Contains(fn.body, "t.Name()") || strings.Contains(fn.body, `"`+fn.name+`"`))
}

// Every fenced block of README.md and docs/*.md says, on the line before
// it, what holds it to the truth (docs/README.md): the body of an Example
// that go test compiles, or a test that reads it by that marker and runs
// or asserts it. A block without a marker, a go block that is not its
// Example's body, and a marker naming a test that is not there or does not
// read the docs all fail here.
func TestEveryDocBlockIsCompiledOrRun(t *testing.T) {
	root := repoRoot(t)
	blocks, err := docblocks.All(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) == 0 {
		t.Fatal("no fenced block in README.md or docs/*.md: the files moved?")
	}
	funcs := testFuncs(t, root)
	byName := map[string][]goFunc{}
	byDir := map[string][]goFunc{}
	for _, f := range funcs {
		byName[f.name] = append(byName[f.name], f)
		byDir[f.dir] = append(byDir[f.dir], f)
	}
	// find resolves a marker's name, "Name" or "dir.Name", to one function.
	find := func(name string) (goFunc, error) {
		dir, fname := "", name
		if i := strings.LastIndex(name, "."); i >= 0 {
			dir, fname = name[:i], name[i+1:]
		}
		var found []goFunc
		for _, f := range byName[fname] {
			if dir == "" || f.dir == dir {
				found = append(found, f)
			}
		}
		switch len(found) {
		case 0:
			return goFunc{}, fmt.Errorf("no function %s in a _test.go file of the repository", name)
		case 1:
			return found[0], nil
		}
		var where []string
		for _, f := range found {
			where = append(where, f.dir+"."+f.name)
		}
		sort.Strings(where)
		return goFunc{}, fmt.Errorf("%s is ambiguous: name it as one of %s", name, strings.Join(where, ", "))
	}
	for _, b := range blocks {
		switch b.Kind {
		case "":
			t.Errorf("%s: a ```%s block with no marker on the line before it (<!-- example|run|output: Name -->, see docs/README.md)", b, b.Lang)
		case "example":
			if b.Lang != "go" {
				t.Errorf("%s: an example marker before a ```%s block, not a ```go one", b, b.Lang)
				continue
			}
			if !strings.HasPrefix(b.Name[strings.LastIndex(b.Name, ".")+1:], "Example") {
				t.Errorf("%s: <!-- example: %s --> names no Example function", b, b.Name)
				continue
			}
			f, err := find(b.Name)
			if err != nil {
				t.Errorf("%s: %v", b, err)
				continue
			}
			if want := exampleText(f.body); b.Text != want {
				t.Errorf("%s: the block is not the body of %s (%s):\n%s", b, f.name, f.file, lineDiff(want, b.Text))
			}
		case "run", "output":
			if !strings.HasPrefix(b.Name, "Test") {
				t.Errorf("%s: <!-- %s: %s --> names no test", b, b.Kind, b.Name)
				continue
			}
			f, err := find(b.Name)
			if err != nil {
				t.Errorf("%s: %v", b, err)
				continue
			}
			if !readsDocs(f, byDir[f.dir]) {
				t.Errorf("%s: %s (%s) does not read its blocks from the docs: it must call docblocks.Marked (or a helper that does) with %q or t.Name()", b, f.name, f.file, b.Name)
			}
		}
	}
}

// lineDiff shows the first line where got departs from want.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d of the block:\n  example: %q\n  docs:    %q", i+1, wl, gl)
		}
	}
	return "(same lines, different line endings)"
}

// The install command names this module, as its go.mod spells it.
func TestTheInstallCommandNamesTheModule(t *testing.T) {
	root := repoRoot(t)
	blocks, err := docblocks.Marked(root, "run", t.Name())
	if err != nil {
		t.Fatal(err)
	}
	module := goModModule(t, filepath.Join(root, "go.mod"))
	for _, b := range blocks {
		if got, want := strings.TrimSpace(b.Text), "go get "+module; got != want {
			t.Errorf("%s: the install command is %q; want %q", b, got, want)
		}
	}
}

func goModModule(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if m, ok := strings.CutPrefix(line, "module "); ok {
			return strings.TrimSpace(m)
		}
	}
	t.Fatalf("%s has no module line", path)
	return ""
}

// .ci/run, which CI runs, runs the very test command the docs give, and
// installs every package they tell a developer to install first.
func TestCIRunsTheDocumentedTestCommand(t *testing.T) {
	root := repoRoot(t)
	blocks, err := docblocks.Marked(root, "run", t.Name())
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	ciLines := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(ci)))
	for sc.Scan() {
		ciLines[strings.TrimSpace(sc.Text())] = true
	}
	ciInstalls := func(pkg string) bool {
		return strings.Contains(string(ci), "need_apt+=("+pkg+")")
	}
	tested := false
	for _, b := range blocks {
		for _, line := range strings.Split(strings.TrimSpace(b.Text), "\n") {
			line = strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(line, "go test "):
				tested = true
				if !ciLines[line] {
					t.Errorf("%s: .ci/run does not run the documented test command %q as written", b, line)
				}
			case strings.HasPrefix(line, "sudo apt-get install -y "):
				for _, pkg := range strings.Fields(strings.TrimPrefix(line, "sudo apt-get install -y ")) {
					if !ciInstalls(pkg) {
						t.Errorf("%s: the docs install %s first, and .ci/run does not", b, pkg)
					}
				}
			default:
				t.Errorf("%s: a line this test does not know: %q", b, line)
			}
		}
	}
	if !tested {
		t.Error("no block marked for this test gives a go test command")
	}
}
