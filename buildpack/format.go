package buildpack

import (
	"fmt"
	"io"
)

// Step prints a top-level step line ("-----> Compressing...").
func Step(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, "-----> "+format+"\n", args...)
}

// Detail prints an indented detail line ("       Done: 1.2K").
func Detail(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, "       "+format+"\n", args...)
}

// Warn prints a rejection or warning line (" !     Push failed").
func Warn(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, " !     "+format+"\n", args...)
}

// Size formats n bytes the way Heroku does (SPEC B2): one decimal with K, M or G,
// bytes below 1 KiB.
func Size(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%dB", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
}
