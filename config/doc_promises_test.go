package config

import (
	"go/parser"
	"go/token"
	"reflect"
	"strings"
	"testing"
)

// config's package doc promises no HTTP statuses: Error is the documented
// error body and its codes, and the statuses are stapler/admin's (which
// alone speaks HTTP). Found when the doc still said "with its codes and
// HTTP statuses" after they had moved, and a handler author reading go doc
// looked for a status that is not there.
func TestPackageDocPromisesNoHTTPStatuses(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Doc.Text()
	if !strings.Contains(doc, "HTTP statuses") {
		return
	}
	typ := reflect.TypeOf(Error{})
	for i := 0; i < typ.NumField(); i++ {
		if strings.Contains(strings.ToLower(typ.Field(i).Name), "status") {
			return
		}
	}
	t.Fatalf("the package doc says Error comes %q, but config.Error has no status (fields Code, Message, Err) and config maps no code to an HTTP status", "with its codes and HTTP statuses")
}
