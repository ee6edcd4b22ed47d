"""check-table on the hand-entered tables of An 2021 and Li 2021 (tests/data/)."""

import math

import pytest
from scipy import stats

from spine_measure.cli import main
from spine_measure.risk.check_table import (
    check_chi2,
    check_logistic_row,
    check_t_test,
    check_table,
    parse_count,
    parse_mean_sd,
    parse_number,
    parse_p,
    verdicts,
)
from spine_measure.risk.errors import TableFormatError


def test_parse_rounding_intervals():
    p = parse_number("15.12")
    assert (p.low, p.high) == pytest.approx((15.115, 15.125))
    assert parse_number("-0.539").low == pytest.approx(-0.5395)
    assert parse_p("0.000*").high == pytest.approx(0.0005)
    assert parse_p("<0.001").high == pytest.approx(0.001)
    assert parse_p("0.86").low == pytest.approx(0.855)
    m, s = parse_mean_sd("-2.46±0.68")
    assert (m.value, s.low) == pytest.approx((-2.46, 0.675))
    assert parse_count("46(19.9%)")[0] == 46
    assert parse_count("12[5.2%]")[1].value == pytest.approx(5.2)
    with pytest.raises(TableFormatError):
        parse_number("abc")


def test_t_test_hand_calculation_an2021_age():
    # Pooled SD: sqrt((81*11.76^2 + 174*11.38^2)/255) = sqrt((11202.1 + 22533.5)/255)
    sp = math.sqrt((81 * 11.76**2 + 174 * 11.38**2) / 255)
    t_hand = (74.78 - 75.05) / (sp * math.sqrt(1 / 82 + 1 / 175))  # = -0.1754
    assert t_hand == pytest.approx(-0.1754, abs=1e-4)
    rows = check_t_test("T", "Age", "74.78±11.76", 82, "75.05±11.38", 175, "-0.176", "0.860")
    stat = next(r for r in rows if r["check"] == "t_test.statistic")
    assert stat["recomputed"] == pytest.approx(t_hand, rel=1e-9)
    # independent library: scipy from summary statistics
    ref = stats.ttest_ind_from_stats(74.78, 11.76, 82, 75.05, 11.38, 175, equal_var=True)
    assert stat["recomputed"] == pytest.approx(ref.statistic)
    assert all(r["status"] == "ok" for r in rows)


def test_t_test_flags_a_wrong_statistic():
    rows = check_t_test("T", "Age", "74.78±11.76", 82, "75.05±11.38", 175, "-0.276", "0.860")
    assert {r["check"]: r["status"] for r in rows}["t_test.statistic"] == "inconsistent"
    # the printed P is still consistent with the means and SDs
    assert {r["check"]: r["status"] for r in rows}["t_test.p"] == "ok"


def test_chi2_hand_calculation_li2021_ivc():
    # 2x2 [[217, 31], [14, 6]], n = 268; Pearson chi2 = n (ad - bc)^2 / (r1 r2 c1 c2)
    n, a, b, c, d = 268, 217, 31, 14, 6
    chi_hand = n * (a * d - b * c) ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))
    assert chi_hand == pytest.approx(4.763, abs=5e-4)
    rows = check_chi2("T", "IVC", ["No", "Yes"], ["217(93.9%)", "14(6.1%)"],
                      ["31(83.8%)", "6(16.2%)"], "4.763", "0.029", 231, 37)
    stat = next(r for r in rows if r["check"] == "chi2.statistic")
    assert stat["recomputed"] == pytest.approx(chi_hand)
    assert all(r["status"] == "ok" for r in rows)


def test_chi2_flags_a_wrong_percentage_and_count_sum():
    rows = check_chi2("T", "IVC", ["No", "Yes"], ["217(95.9%)", "14(6.1%)"],
                      ["31(83.8%)", "6(16.2%)"], "4.763", "0.029", 232, 37)
    bad = {(r["item"], r["check"]) for r in rows if r["status"] == "inconsistent"}
    assert ("IVC", "counts.sum_group1") in bad
    assert ("IVC: No", "percent.group1") in bad


def test_logistic_row_hand_calculation():
    # An 2021 BMD: Wald = (0.539/0.245)^2 = 4.840; OR = e^-0.539 = 0.5833;
    # CI = e^(-0.539 -/+ 1.96*0.245) = 0.3609 .. 0.9429
    rows = {r["check"]: r for r in check_logistic_row("T", "BMD", "-0.539", "0.245", "4.853",
                                                      "0.028", "0.583", "0.361", "0.942")}
    assert rows["logistic.wald"]["recomputed"] == pytest.approx((0.539 / 0.245) ** 2)
    assert rows["logistic.odds_ratio"]["recomputed"] == pytest.approx(math.exp(-0.539))
    assert rows["logistic.ci_low"]["recomputed"] == pytest.approx(
        math.exp(-0.539 - 1.959964 * 0.245), rel=1e-6)
    assert all(r["status"] == "ok" for r in rows.values())


@pytest.mark.parametrize("name", ["an2021_table1", "an2021_table2", "li2021_table1",
                                  "li2021_table2", "li2021_table3", "xiong2021_table2"])
def test_tables_that_reproduce(data_dir, name):
    res = check_table(data_dir / f"{name}.csv")
    assert len(res) > 10 if name != "xiong2021_table2" else len(res) == 8
    assert (res.status == "ok").all(), res[res.status != "ok"].to_string()


def test_an2021_table1_variants(data_dir):
    res = check_table(data_dir / "an2021_table1.csv")
    stat = res[res.check == "t_test.statistic"].set_index("item")
    # cement volume reproduces only with Welch's t (-6.951); the others with Student's
    assert stat.loc["Volume of bone cement injected (ml)", "variant"] == "welch"
    assert stat.loc["Volume of bone cement injected (ml)", "recomputed"] == pytest.approx(
        stats.ttest_ind_from_stats(3.34, 1.26, 82, 4.55, 1.41, 175, equal_var=False).statistic)
    others = stat.drop("Volume of bone cement injected (ml)")
    assert others.variant.isin(["student", "student+welch"]).all()
    # where both reproduce, both are named
    both = others[others.variant == "student+welch"]
    assert both.note.eq("reproduces with Student's t and with Welch's t").all()
    chi = res[res.check == "chi2.statistic"]
    assert (chi.variant == "pearson").all() and len(chi) == 8


def test_li2021_table4_flags_exactly_the_known_misprints(data_dir):
    res = check_table(data_dir / "li2021_table4.csv")
    bad = res[res.status == "inconsistent"]
    assert set(bad["item"]) == {"Posterior fascia oedema (Yes)", "Cement distribution (Blocky)"}
    blocky = bad[bad["item"] == "Cement distribution (Blocky)"]
    assert set(blocky.check) == {"logistic.odds_ratio", "logistic.ci_low", "logistic.ci_high"}
    assert blocky.note.str.contains("sign of B").all()
    fascia = bad[bad["item"] == "Posterior fascia oedema (Yes)"]
    assert set(fascia.check) == {"logistic.wald", "logistic.p_from_b_se",
                                 "logistic.odds_ratio", "logistic.ci_low", "logistic.ci_high"}
    assert fascia.note.str.contains("B = 1.377").all()
    # the printed Wald and P agree with each other, only B disagrees with them
    ok = res[(res["item"] == "Posterior fascia oedema (Yes)") & (res.status == "ok")]
    assert list(ok.check) == ["logistic.p_from_printed_wald"]
    assert res[res.check == "wald_joint"].status.tolist() == ["not_checkable"]


def test_unparsable_row_is_not_checkable_and_the_rest_is_checked(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("table,item,test,group1,group2,n1,n2,statistic,p\n"
                 "T,Age,t,74.78,1,82,175,1,0.5\n"
                 "T,Pain,t,5 [3-7],6 [4-8],82,175,,0.2\n"
                 "T,Height,t,74.78±11.76,75.05±11.38,82,175,-0.176,0.860\n")
    res = check_table(p)
    bad = res[res["item"].isin(["Age", "Pain"])]
    assert bad.status.tolist() == ["not_checkable", "not_checkable"]
    assert bad.note.str.startswith("cannot be checked: ").all()
    assert "5 [3-7]" in bad.note.iloc[1]
    assert (res[res["item"] == "Height"].status == "ok").all()
    v = {x["item"]: x["verdict"] for x in verdicts(res)}
    assert v == {"Age": "not_checkable", "Pain": "not_checkable", "Height": "ok"}
    assert main(["risk", "check-table", str(p)]) == 0  # nothing inconsistent
    p.write_text("table,item\nT,Age\n")
    with pytest.raises(TableFormatError, match="missing column"):
        check_table(p)


def test_fisher_printed_p_of_a_2x2_row_is_recognised(tmp_path):
    # [[3, 1], [1, 4]]: Pearson P 0.0833, Yates P 0.2857, Fisher's exact P 0.2063
    assert stats.fisher_exact([[3, 1], [1, 4]]).pvalue == pytest.approx(0.206349, abs=1e-6)
    rows = check_chi2("T", "IVC", ["Yes", "No"], ["3", "1"], ["1", "4"], "", "0.206")
    assert [(r["check"], r["status"], r["variant"]) for r in rows] == [
        ("chi2.p", "ok", "fisher")]
    assert rows[0]["note"] == "reproduces with Fisher's exact test only"
    bad = check_chi2("T", "IVC", ["Yes", "No"], ["3", "1"], ["1", "4"], "", "0.150")
    assert bad[0]["status"] == "inconsistent" and "Fisher's exact test: 0.2063" in bad[0]["note"]


def test_cli_one_verdict_per_item_with_failing_checks(data_dir, capsys):
    assert main(["risk", "check-table", str(data_dir / "li2021_table4.csv")]) == 1
    out = capsys.readouterr().out.splitlines()
    heads = [line for line in out if not line.startswith("    ")][:-1]
    assert heads == ["Li2021 T4 / Posterior fascia oedema (Yes): inconsistent",
                     "Li2021 T4 / Paraspinal muscle degeneration: not checkable",
                     "Li2021 T4 / Cement distribution (Blocky): inconsistent"]
    odds = next(line for line in out if "logistic.odds_ratio: printed 3.965" in line)
    assert "recomputed 3.808 [3.806, 3.81]" in odds
