// Command winzip makes the Windows package: a .zip with both .exe files,
// the example config, the MIB and a short install note (make package).
package main

import (
	"archive/zip"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

const installNote = `clusterd for Windows — install
==============================

As Administrator, in PowerShell:

  mkdir 'C:\Program Files\clusterd', 'C:\ProgramData\clusterd'
  copy clusterd.exe, clusterctl.exe 'C:\Program Files\clusterd\'
  copy clusterd.yaml 'C:\ProgramData\clusterd\'
  # the cluster key: the SAME file on every node (copy it from the first one),
  # or make one on the first node:
  & 'C:\Program Files\clusterd\clusterd.exe' keygen --out 'C:\ProgramData\clusterd\cluster.key'
  # edit C:\ProgramData\clusterd\clusterd.yaml (key_file, node, heartbeat), then:
  & 'C:\Program Files\clusterd\clusterd.exe' validate --config 'C:\ProgramData\clusterd\clusterd.yaml'
  & 'C:\Program Files\clusterd\clusterd.exe' service install --config 'C:\ProgramData\clusterd\clusterd.yaml'
  & 'C:\Program Files\clusterd\clusterd.exe' service start
  sc query clusterd

The key file must be readable by SYSTEM and Administrators only. The service
logs to the Windows Event Log (source clusterd) and is restarted by the
service manager after a failure. A Windows node is a member, a voter and a
failover-group owner (exec and service resources); it does not take a share
of a load-balanced VIP (that needs the Linux nftables datapath).
What is tested on Windows: README.md, "Windows".

CLUSTERD-MIB.txt is the SNMP MIB for the NOC's manager.

Tab completion in PowerShell: add this line to your $PROFILE:

  . 'C:\Program Files\clusterd\clusterctl-completion.ps1'

(copy clusterctl-completion.ps1 and clusterd-completion.ps1 there first).
`

func main() {
	bin := flag.String("bin", "bin/windows", "directory with clusterd.exe and clusterctl.exe")
	gen := flag.String("gen", "build/gen", "directory with the generated completions (make gen)")
	version := flag.String("version", "dev", "package version")
	out := flag.String("out", "dist", "output directory")
	flag.Parse()
	if err := run(*bin, *gen, *version, *out); err != nil {
		fmt.Fprintln(os.Stderr, "winzip:", err)
		os.Exit(1)
	}
}

func run(bin, gen, version, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	name := filepath.Join(out, fmt.Sprintf("clusterd_%s_windows_amd64.zip", version))
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer f.Close()
	z := zip.NewWriter(f)
	files := []struct{ src, dst string }{
		{filepath.Join(bin, "clusterd.exe"), "clusterd.exe"},
		{filepath.Join(bin, "clusterctl.exe"), "clusterctl.exe"},
		{"packaging/clusterd.yaml", "clusterd.yaml"},
		{"packaging/snmp/CLUSTERD-MIB.txt", "CLUSTERD-MIB.txt"},
		{"README.md", "README.md"},
		{filepath.Join(gen, "completions", "clusterctl.powershell"), "clusterctl-completion.ps1"},
		{filepath.Join(gen, "completions", "clusterd.powershell"), "clusterd-completion.ps1"},
	}
	for _, fl := range files {
		if err := add(z, fl.src, fl.dst); err != nil {
			return err
		}
	}
	w, err := z.CreateHeader(&zip.FileHeader{Name: "INSTALL.txt", Method: zip.Deflate, Modified: time.Now()})
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, installNote); err != nil {
		return err
	}
	if err := z.Close(); err != nil {
		return err
	}
	fmt.Println(name)
	return f.Close()
}

func add(z *zip.Writer, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	h, err := zip.FileInfoHeader(st)
	if err != nil {
		return err
	}
	h.Name, h.Method = dst, zip.Deflate
	w, err := z.CreateHeader(h)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, in)
	return err
}
