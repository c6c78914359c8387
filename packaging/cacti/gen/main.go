// Command gen writes packaging/cacti/clusterd_templates.xml: Cacti data
// queries, data templates and graph templates for clusterd, in the XML
// format of Cacti's own template export (Cacti 1.2, hash version 1.2.0).
//
//	go run ./packaging/cacti/gen > packaging/cacti/clusterd_templates.xml
//
// The structure follows what Cacti 1.2 exports (lib/export.php); the file
// was import-tested with cli/import_template.php on Cacti 1.2.24 (see
// packaging/cacti/README.md). References to Cacti's stock objects (the
// "Get SNMP Data (Indexed)" input method and its fields, the "5 Minute
// Collection" profile, the "Normal" GPRINT) use their fixed hashes, which
// every Cacti install has, so the file does not carry copies of them.
package main

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

const ver = "0101" // Cacti 1.2.0: importable by every 1.2.x

// Stock Cacti objects (fixed hashes in every install).
const (
	dimIndexed = "bf566c869ac6443b0c75d1c32b5a350e" // Get SNMP Data (Indexed)
	profile5m  = "d62c52891f4f9688729a5bc9fad91b18" // 5 Minute Collection
	gprintNorm = "e9c43831e54eca8069317a2ce8c6f751" // Normal: %8.2lf %s
)

// The input fields of "Get SNMP Data (Indexed)", in Cacti's order.
var dimFields = []string{
	"617cdc8a230615e59f06f361ef6e7728", "acb449d1451e8a2a655c2c99d31142c7", "f4facc5e2ca7ebee621f09bc6d9fc792",
	"1cc1493a6781af2c478fa4de971531cf", "b5c23f246559df38662c255f4aa21d6b", "6027a919c7c7731fbe095b6f53ab127b",
	"cbbe5c1ddfb264a6e5d509ce1c78c95f", "e6deda7be0f391399c5130e7c4a48b28", "c1f36ee60c3dc98945556d57f26e475b",
	"2cf7129ad3ff819a7a7ac189bee48ce8", "6b13ac0a0194e171d241d4b06f913158", "3a33d4fc65b8329ab2ac46a36da26b72",
}

// RRD data source types and graph item types (Cacti's ids).
const (
	gauge   = 1
	counter = 2
	line2   = 5
	area    = 7
	stack   = 8
	gprint  = 9
)

type ds struct {
	name  string // RRD data source name (≤ 19 chars)
	field string // the data query's output field
	typ   int
	max   string
}

type item struct {
	ds    string
	kind  int
	color string
	label string
}

type graph struct {
	name, title, vlabel string
	base                int
	items               []item
}

type query struct {
	name, desc, file string
	dtName, dsTitle  string
	dss              []ds
	graphs           []graph
}

var queries = []query{
	{
		name: "clusterd - Members", desc: "clusterd cluster members as the polled node sees them (CLUSTERD-MIB::cdMemberTable)",
		file: "clusterd_members.xml", dtName: "clusterd - Member", dsTitle: "|host_description| - clusterd member |query_cdMemberName|",
		dss: []ds{
			{"state", "cdMemberState", gauge, "6"},
			{"healthy", "cdMemberHealthy", gauge, "2"},
			{"buckets", "cdMemberBuckets", gauge, "U"},
			{"state_changes", "cdMemberStateChanges", counter, "U"},
		},
		graphs: []graph{
			{"clusterd - Member state", "|host_description| - member |query_cdMemberName| state (2 active, 3 draining, 4 drained, 5 failed, 6 left)", "state", 1000,
				[]item{{"state", line2, "FF0000", "State"}}},
			{"clusterd - Member buckets", "|host_description| - member |query_cdMemberName| buckets owned", "buckets", 1000,
				[]item{{"buckets", area, "00CF00", "Buckets"}}},
			{"clusterd - Member state changes", "|host_description| - member |query_cdMemberName| state changes", "changes/s", 1000,
				[]item{{"state_changes", area, "FF7D00", "State changes"}}},
		},
	},
	{
		name: "clusterd - VIPs", desc: "clusterd load-balanced VIPs with the polled node's counters (CLUSTERD-MIB::cdVipTable)",
		file: "clusterd_vips.xml", dtName: "clusterd - VIP", dsTitle: "|host_description| - clusterd VIP |query_cdVipAddressText|",
		dss: []ds{
			{"accepted", "cdVipPacketsAccepted", counter, "U"},
			{"dropped", "cdVipPacketsDropped", counter, "U"},
			{"buckets", "cdVipBucketsOwned", gauge, "U"},
		},
		graphs: []graph{
			{"clusterd - VIP packets", "|host_description| - VIP |query_cdVipAddressText| packets accepted and dropped here", "packets/s", 1000,
				[]item{{"accepted", area, "00CF00", "Accepted"}, {"dropped", stack, "C0C0C0", "Dropped (other nodes' buckets)"}}},
			{"clusterd - VIP buckets", "|host_description| - VIP |query_cdVipAddressText| buckets owned here", "buckets", 1000,
				[]item{{"buckets", area, "4668E4", "Buckets"}}},
		},
	},
	{
		name: "clusterd - Failover groups", desc: "clusterd failover groups (CLUSTERD-MIB::cdGroupTable)",
		file: "clusterd_groups.xml", dtName: "clusterd - Group", dsTitle: "|host_description| - clusterd group |query_cdGroupName|",
		dss: []ds{
			{"state", "cdGroupState", gauge, "4"},
			{"failovers", "cdGroupFailovers", counter, "U"},
			{"lag", "cdGroupLagBytes", gauge, "U"},
		},
		graphs: []graph{
			{"clusterd - Group failovers", "|host_description| - group |query_cdGroupName| failovers", "failovers/s", 1000,
				[]item{{"failovers", area, "FF0000", "Failovers"}}},
			{"clusterd - Group state", "|host_description| - group |query_cdGroupName| state (1 online, 2 failing over, 3 offline, 4 degraded)", "state", 1000,
				[]item{{"state", line2, "4668E4", "State"}}},
			{"clusterd - Group replication lag", "|host_description| - group |query_cdGroupName| replication lag", "bytes", 1024,
				[]item{{"lag", area, "FF7D00", "Lag"}}},
		},
	},
}

// id is a stable 32-hex identity for one object.
func id(parts ...string) string {
	s := md5.Sum([]byte("clusterd cacti " + strings.Join(parts, "/")))
	return hex.EncodeToString(s[:])
}

func ref(code, h string) string { return "hash_" + code + ver + h }

func esc(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}

type w struct{ strings.Builder }

func (b *w) f(indent int, format string, a ...any) {
	b.WriteString(strings.Repeat("\t", indent))
	fmt.Fprintf(b, format, a...)
	b.WriteString("\n")
}

// tf writes a templated field pair (t_name empty: not overridable).
func (b *w) tf(indent int, name, value string) {
	b.f(indent, "<t_%s></t_%s>", name, name)
	b.f(indent, "<%s>%s</%s>", name, esc(value), name)
}

func main() { os.Stdout.WriteString(render()) }

func render() string {
	var b w
	b.f(0, "<cacti>")
	for _, q := range queries {
		dt := id(q.name, "data template")
		rrd := func(dsName string) string { return id(q.name, "rrd", dsName) }
		// The data query.
		b.f(1, "<%s>", ref("04", id(q.name)))
		b.f(2, "<name>%s</name>", esc(q.name))
		b.f(2, "<description>%s</description>", esc(q.desc))
		b.f(2, "<xml_path>%s</xml_path>", esc("<path_cacti>/resource/snmp_queries/"+q.file))
		b.f(2, "<data_input_id>%s</data_input_id>", ref("03", dimIndexed))
		b.f(2, "<graphs>")
		for _, g := range q.graphs {
			b.f(3, "<%s>", ref("11", id(q.name, g.name, "dq graph")))
			b.f(4, "<graph_template_id>%s</graph_template_id>", ref("00", id(q.name, g.name)))
			b.f(4, "<name>%s</name>", esc(strings.TrimPrefix(g.name, "clusterd - ")))
			b.f(4, "<rrd>")
			seen := map[string]bool{}
			n := 0
			for _, it := range g.items {
				if seen[it.ds] {
					continue
				}
				seen[it.ds] = true
				field := ""
				for _, d := range q.dss {
					if d.name == it.ds {
						field = d.field
					}
				}
				b.f(5, "<item_%03d>", n)
				b.f(6, "<snmp_field_name>%s</snmp_field_name>", field)
				b.f(6, "<data_template_id>%s</data_template_id>", ref("01", dt))
				b.f(6, "<data_template_rrd_id>%s</data_template_rrd_id>", ref("08", rrd(it.ds)))
				b.f(5, "</item_%03d>", n)
				n++
			}
			b.f(4, "</rrd>")
			b.f(4, "<sv_graph>")
			b.f(4, "</sv_graph>")
			b.f(4, "<sv_data_source>")
			b.f(4, "</sv_data_source>")
			b.f(3, "</%s>", ref("11", id(q.name, g.name, "dq graph")))
		}
		b.f(2, "</graphs>")
		b.f(1, "</%s>", ref("04", id(q.name)))

		// Graph templates.
		for _, g := range q.graphs {
			gt := id(q.name, g.name)
			b.f(1, "<%s>", ref("00", gt))
			b.f(2, "<name>%s</name>", esc(g.name))
			b.f(2, "<multiple></multiple>")
			b.f(2, "<test_source></test_source>")
			b.f(2, "<graph>")
			for _, kv := range [][2]string{
				{"title", g.title}, {"vertical_label", g.vlabel}, {"image_format_id", "1"}, {"height", "200"}, {"width", "700"},
				{"base_value", fmt.Sprint(g.base)}, {"slope_mode", "on"}, {"auto_scale", "on"}, {"auto_scale_opts", "2"},
				{"auto_scale_log", ""}, {"scale_log_units", ""}, {"auto_scale_rigid", ""}, {"upper_limit", "0"}, {"lower_limit", "0"},
				{"unit_value", ""}, {"unit_exponent_value", ""}, {"unit_length", ""}, {"no_gridfit", ""}, {"alt_y_grid", ""},
				{"right_axis", ""}, {"right_axis_label", ""}, {"right_axis_format", "0"}, {"right_axis_formatter", ""},
				{"left_axis_formatter", ""}, {"auto_padding", "on"}, {"dynamic_labels", ""}, {"force_rules_legend", ""},
				{"tab_width", ""}, {"legend_position", ""}, {"legend_direction", ""},
			} {
				b.tf(3, kv[0], kv[1])
			}
			b.f(2, "</graph>")
			b.f(2, "<items>")
			seq := 0
			byDS := map[string][]string{}
			var order []string
			emit := func(dsName string, kind int, color, alpha, cf, text, hardReturn, width string) {
				seq++
				h := id(q.name, g.name, "item", fmt.Sprint(seq))
				if _, ok := byDS[dsName]; !ok {
					order = append(order, dsName)
				}
				byDS[dsName] = append(byDS[dsName], h)
				b.f(3, "<%s>", ref("10", h))
				b.f(4, "<graph_type_id>%d</graph_type_id>", kind)
				b.f(4, "<task_item_id>%s</task_item_id>", ref("08", rrd(dsName)))
				b.f(4, "<color_id>%s</color_id>", color)
				b.f(4, "<alpha>%s</alpha>", alpha)
				b.f(4, "<consolidation_function_id>%s</consolidation_function_id>", cf)
				b.f(4, "<cdef_id>0</cdef_id>")
				b.f(4, "<vdef_id>0</vdef_id>")
				b.f(4, "<shift></shift>")
				b.f(4, "<value></value>")
				b.f(4, "<gprint_id>%s</gprint_id>", ref("06", gprintNorm))
				b.f(4, "<textalign></textalign>")
				b.f(4, "<text_format>%s</text_format>", esc(text))
				b.f(4, "<hard_return>%s</hard_return>", hardReturn)
				b.f(4, "<line_width>%s</line_width>", width)
				b.f(4, "<dashes></dashes>")
				b.f(4, "<dash_offset>0</dash_offset>")
				b.f(4, "<sequence>%d</sequence>", seq)
				b.f(3, "</%s>", ref("10", h))
			}
			for _, it := range g.items {
				width := "0.00"
				if it.kind == line2 {
					width = "2.00"
				}
				emit(it.ds, it.kind, it.color, "FF", "1", it.label, "", width)
				emit(it.ds, gprint, "0", "FF", "4", "Current:", "", "0.00")
				emit(it.ds, gprint, "0", "FF", "1", "Average:", "", "0.00")
				emit(it.ds, gprint, "0", "FF", "3", "Maximum:", "on", "0.00")
			}
			b.f(2, "</items>")
			b.f(2, "<inputs>")
			for _, dsName := range order {
				in := id(q.name, g.name, "input", dsName)
				var items []string
				for _, h := range byDS[dsName] {
					items = append(items, ref("00", h)) // Cacti's exporter writes item hashes with the graph template's code here
				}
				b.f(3, "<%s>", ref("09", in))
				b.f(4, "<name>Data Source [%s]</name>", dsName)
				b.f(4, "<description></description>")
				b.f(4, "<column_name>task_item_id</column_name>")
				b.f(4, "<items>%s</items>", strings.Join(items, "|"))
				b.f(3, "</%s>", ref("09", in))
			}
			b.f(2, "</inputs>")
			b.f(1, "</%s>", ref("00", gt))
		}

		// The data template.
		b.f(1, "<%s>", ref("01", dt))
		b.f(2, "<name>%s</name>", esc(q.dtName))
		b.f(2, "<ds>")
		b.tf(3, "name", q.dsTitle)
		b.f(3, "<data_source_path></data_source_path>")
		b.f(3, "<data_input_id>%s</data_input_id>", ref("03", dimIndexed))
		b.f(3, "<t_data_source_profile_id></t_data_source_profile_id>")
		b.f(3, "<data_source_profile_id>%s</data_source_profile_id>", ref("20", profile5m))
		b.tf(3, "rrd_step", "300")
		b.tf(3, "active", "on")
		b.f(2, "</ds>")
		b.f(2, "<items>")
		for _, d := range q.dss {
			b.f(3, "<%s>", ref("08", rrd(d.name)))
			b.tf(4, "data_source_name", d.name)
			b.tf(4, "rrd_minimum", "0")
			b.tf(4, "rrd_maximum", d.max)
			b.tf(4, "data_source_type_id", fmt.Sprint(d.typ))
			b.tf(4, "rrd_heartbeat", "600")
			b.tf(4, "data_input_field_id", "0")
			b.f(3, "</%s>", ref("08", rrd(d.name)))
		}
		b.f(2, "</items>")
		b.f(2, "<data>")
		for i, fh := range dimFields {
			b.f(3, "<item_%03d>", i)
			b.f(4, "<data_input_field_id>%s</data_input_field_id>", ref("07", fh))
			b.f(4, "<t_value></t_value>")
			b.f(4, "<value></value>")
			b.f(3, "</item_%03d>", i)
		}
		b.f(2, "</data>")
		b.f(1, "</%s>", ref("01", dt))
	}
	b.f(0, "</cacti>")
	return b.String()
}
