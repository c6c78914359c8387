package config

import (
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
)

// privateSDDL: only SYSTEM and Administrators, full control, not
// inherited from the folder (P) — what Restrict sets and exposed accepts.
const privateSDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"

// exposed says who else than SYSTEM, Administrators and the file's owner
// (who may change its access list anyway) may read a secret file (key,
// tokens), from its access list, or "" if nobody.
func exposed(path string, _ os.FileInfo) string {
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION|windows.OWNER_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Sprintf("has an access list that cannot be read (%v)", err)
	}
	return daclExposure(path, sd)
}

// readRights are the access bits that let a holder read the file.
const readRights = windows.FILE_READ_DATA | windows.GENERIC_READ | windows.GENERIC_ALL

// daclExposure is exposed's decision, on a security descriptor.
func daclExposure(path string, sd *windows.SECURITY_DESCRIPTOR) string {
	fix := fmt.Sprintf("run: icacls %s /inheritance:r /grant:r SYSTEM:F Administrators:F", path)
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		return "has no access list (everyone may read it); " + fix
	}
	owner, _, _ := sd.Owner()
	var who []string
	for i := 0; i < int(dacl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, uint32(i), &ace); err != nil {
			return fmt.Sprintf("has an access list that cannot be read (%v); %s", err, fix)
		}
		if ace.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE || ace.Mask&readRights == 0 {
			continue
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		if sid.IsWellKnown(windows.WinLocalSystemSid) || sid.IsWellKnown(windows.WinBuiltinAdministratorsSid) || owner != nil && sid.Equals(owner) {
			continue
		}
		name := sid.String()
		if acct, dom, _, err := sid.LookupAccount(""); err == nil {
			name = dom + `\` + acct
		}
		who = append(who, name)
	}
	if len(who) > 0 {
		return "is readable by " + strings.Join(who, ", ") + " (only SYSTEM, Administrators and its owner may read it); " + fix
	}
	return ""
}

// Restrict makes a secret file readable by SYSTEM and Administrators only.
func Restrict(path string) error {
	sd, err := windows.SecurityDescriptorFromString(privateSDDL)
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	return windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
}
