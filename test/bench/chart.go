package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Chart geometry: one panel per handler, one row per operation with a bar
// for each runtime on a log scale of milliseconds.
const (
	chartWidth = 980
	labelWidth = 250
	ratioWidth = 70
	rowHeight  = 30
	barHeight  = 11
	panelHead  = 40
	minMS      = 0.1
	maxMS      = 10000.0
)

var runtimeColors = map[string]string{rtContainerd: "#8c8c8c", rtCrimux: "#2b6cb0"}

// chartRows are a handler's operations in the chart: everything but the list
// phase, and the list phase at its largest pod count.
func (r *results) chartRows(h string) []opResult {
	var rows []opResult
	top := 0
	for _, o := range r.Ops {
		if o.Handler == h && isList(o.Op) {
			var n int
			_, _ = fmt.Sscanf(o.Op[strings.LastIndexByte(o.Op, '(')+1:], "%d pods)", &n)
			top = max(top, n)
		}
	}
	for _, o := range r.Ops {
		if o.Handler != h {
			continue
		}
		if !isList(o.Op) || strings.HasSuffix(o.Op, fmt.Sprintf("(%d pods)", top)) {
			rows = append(rows, o)
		}
	}
	return rows
}

func xOf(v float64) float64 {
	v = math.Max(minMS, math.Min(maxMS, v))
	plot := float64(chartWidth - labelWidth - ratioWidth - 20)
	return labelWidth + plot*(math.Log10(v)-math.Log10(minMS))/(math.Log10(maxMS)-math.Log10(minMS))
}

func (r *results) chart() string {
	hs := r.handlers()
	height := 30
	for _, h := range hs {
		height += panelHead + rowHeight*len(r.chartRows(h)) + 30
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", chartWidth, height)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&sb, `<text x="10" y="20" font-size="14" font-weight="bold">p50 latency, ms (log scale): containerd's CRI vs crimux — %s, %s cores</text>`+"\n",
		html.EscapeString(r.Date), html.EscapeString(r.Machine["cores"]))
	legendX := chartWidth - 230
	for i, name := range []string{rtContainerd, rtCrimux} {
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="12" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			legendX+i*110, 10, runtimeColors[name], legendX+i*110+16, 19, legendName(name))
	}
	y := 30
	for _, h := range hs {
		rows := r.chartRows(h)
		fmt.Fprintf(&sb, `<text x="10" y="%d" font-size="13" font-weight="bold">handler %s</text>`+"\n", y+22, html.EscapeString(h))
		fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="end" fill="#555">crimux/containerd</text>`+"\n", chartWidth-10, y+22)
		top := y + panelHead
		bottom := top + rowHeight*len(rows)
		for _, tick := range []float64{0.1, 1, 10, 100, 1000, 10000} {
			x := xOf(tick)
			fmt.Fprintf(&sb, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e2e2e2"/>`+"\n", x, top-4, x, bottom)
			fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle" fill="#777">%g</text>`+"\n", x, bottom+14, tick)
		}
		for i, o := range rows {
			ry := top + i*rowHeight
			fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelWidth-8, ry+rowHeight/2+4, html.EscapeString(o.Op))
			for j, s := range []struct {
				name string
				v    float64
			}{{rtContainerd, o.Containerd.P50}, {rtCrimux, o.Crimux.P50}} {
				by := ry + 3 + j*(barHeight+2)
				x := xOf(s.v)
				fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", labelWidth, by, x-labelWidth, barHeight, runtimeColors[s.name])
				fmt.Fprintf(&sb, `<text x="%.1f" y="%d" font-size="10" fill="#333">%s</text>`+"\n", x+3, by+barHeight-1, num(s.v))
			}
			color := "#2f855a"
			if o.RatioP50 > 1.0 {
				color = "#c53030"
			}
			fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="end" fill="%s" font-weight="bold">%.2f×</text>`+"\n", chartWidth-10, ry+rowHeight/2+4, color, o.RatioP50)
		}
		y = bottom + 30
	}
	sb.WriteString("</svg>\n")
	return sb.String()
}

func legendName(rt string) string {
	if rt == rtContainerd {
		return "containerd CRI"
	}
	return rt
}
