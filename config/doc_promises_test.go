package config

import (
	"go/parser"
	"go/token"
	"reflect"
	"strings"
	"testing"
)

// DEFECT (the package doc lies after issue 16): config's doc says "Error is
// the documented error body, with its codes and HTTP statuses", but issue
// 16 took the HTTP statuses out of config (they are decided in
// stapler/admin, which alone speaks HTTP): Error has no status field and
// nothing in config maps a code to a status. A Store or handler author
// reading go doc looks for a status that is not there.
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
