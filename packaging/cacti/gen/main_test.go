package main

import (
	"encoding/xml"
	"os"
	"strings"
	"testing"
)

// The committed templates are what the generator writes, and well-formed.
func TestTemplatesUpToDate(t *testing.T) {
	want := render()
	got, err := os.ReadFile("../clusterd_templates.xml")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("packaging/cacti/clusterd_templates.xml is stale: go run ./packaging/cacti/gen > packaging/cacti/clusterd_templates.xml")
	}
	d := xml.NewDecoder(strings.NewReader(want))
	for {
		_, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("not well-formed XML: %v", err)
		}
	}
}
