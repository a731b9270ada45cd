package djangodb

import (
	"strings"
	"testing"
)

func TestPgWithParams(t *testing.T) {
	tests := []struct{ name, dsn, zone, want string }{
		{"URL gets the zone", "postgres://u@h:5432/db?sslmode=disable", "Europe/Vienna",
			"postgres://u@h:5432/db?sslmode=disable&timezone=Europe%2FVienna"},
		{"postgresql scheme", "postgresql://u@h/db", "UTC", "postgresql://u@h/db?timezone=UTC"},
		{"URL naming a zone keeps it", "postgres://u@h/db?TimeZone=Asia%2FTokyo", "UTC", "postgres://u@h/db?TimeZone=Asia%2FTokyo"},
		{"key=value gets the zone", "host=h dbname=db", "Europe/Vienna", "host=h dbname=db timezone='Europe/Vienna'"},
		{"key=value naming a zone keeps it", "host=h timezone=UTC", "Europe/Vienna", "host=h timezone=UTC"},
		{"no zone to set", "postgres://u@h/db", "", "postgres://u@h/db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pgWithParams(tc.dsn, [2]string{"timezone", tc.zone})
			if err != nil || got != tc.want {
				t.Errorf("pgWithParams(%q, timezone=%q) = %q, %v; want %q", tc.dsn, tc.zone, got, err, tc.want)
			}
		})
	}
	two, err := pgWithParams("host=h", [2]string{"timezone", "UTC"}, [2]string{"binary_parameters", "yes"})
	if want := "host=h timezone='UTC' binary_parameters='yes'"; err != nil || two != want {
		t.Errorf("two parameters: %q, %v; want %q", two, err, want)
	}
	if _, err := pgWithParams("postgres://u:secret@[::1/db", [2]string{"timezone", "UTC"}); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("unparsable URL: error %v, want one without the password", err)
	}
}
