// go-github against `flynnrel serve` (script/test-clients). Its own module, so the pin on
// go-github stays out of the project's Go API module under go/.
module flynnrel.test/clients/gogithub

go 1.25.0

require github.com/google/go-github/v84 v84.0.0

require github.com/google/go-querystring v1.2.0 // indirect
