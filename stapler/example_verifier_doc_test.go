package stapler_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

// DEFECT (an Example that does not show what it claims; issue 16 asked for
// exactly this to be fixed): ExampleVerifier's doc says "a revoked
// certificate is refused, and so is a must-staple one that comes without a
// staple", but the example only shows the revocation; no must-staple
// certificate appears in it and its Output has no must-staple line. A
// reader of pkg.go.dev is promised a demonstration that is not there.
func TestExampleVerifierShowsWhatItsDocPromises(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "example_test.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "ExampleVerifier" {
			continue
		}
		doc := fn.Doc.Text()
		if !strings.Contains(doc, "must-staple") {
			return // the doc no longer promises it
		}
		var body strings.Builder
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				body.WriteString(id.Name + " ")
			}
			return true
		})
		out := ""
		for _, cg := range f.Comments {
			if cg.Pos() > fn.Body.Lbrace && cg.End() < fn.Body.Rbrace && strings.HasPrefix(strings.TrimSpace(cg.Text()), "Output:") {
				out = cg.Text()
			}
		}
		if !strings.Contains(body.String(), "MustStaple") || !strings.Contains(strings.ToLower(out), "must") {
			t.Fatalf("ExampleVerifier's doc promises %q, but its code issues no must-staple certificate and its output shows no such refusal:\n%s", strings.TrimSpace(doc), out)
		}
		return
	}
	t.Fatal("ExampleVerifier not found")
}
