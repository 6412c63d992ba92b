module github.com/flynn/flynn/libflynnrel/go

go 1.13

require github.com/flynn/go-docopt v0.0.0-20140912013429-f6dd2ebbb31e
