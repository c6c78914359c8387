package config

import (
	"testing"

	"golang.org/x/sys/windows"

	"github.com/clusterd/clusterd/internal/testenv"
)

// makeReadable opens a file to Everyone, as a careless copy would.
func makeReadable(t *testing.T, path string) {
	t.Helper()
	testenv.SkipUnderWine(t, "Wine ignores an access list set on a file (it derives one from the Unix mode)")
	sd, err := windows.SecurityDescriptorFromString("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;WD)")
	if err != nil {
		t.Fatal(err)
	}
	dacl, _, _ := sd.DACL()
	if err := windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil); err != nil {
		t.Fatal(err)
	}
}
