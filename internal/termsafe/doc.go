// Package termsafe filters bytes on their way to someone's terminal: build
// output keeps its SGR colours, `\r` progress, tabs, newlines and UTF-8 text,
// and loses every other escape sequence and control character. It never
// touches what is stored; it knows nothing of SSH, git or buildpacks.
package termsafe
