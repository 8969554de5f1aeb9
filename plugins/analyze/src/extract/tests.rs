use super::{Extracted, extract, is_chatter, title_of};

/// The shape gemma3 gave the seed run's analysis: a chatty opening, bold
/// numbered pseudo-headings, nested bullets, a table and a closing question.
const SEED_ANALYSIS: &str = "\
Okay, here's a performance analysis of the provided benchmark data, structured as requested.

**1. Executive Summary**

This benchmark dataset comprises 101 files, predominantly related to compilation and benchmarking efforts for a ‘gemma3’ model, with a significant focus on iterative quantization (IT-QAT) parameter tuning.
The last modified dates indicate ongoing testing and refinement.

**2. Key Performance Findings**

*   **High Volume of Benchmarks:** The dataset represents a substantial number of benchmark runs, suggesting a rigorous testing process.
*   **Convolutional Benchmarks Dominance:**  The frequent use of \"conv_bench\" and \"conv_cuda_bench\" suggests that convolutional operations are a central performance area of concern.
*   **Temporal Trends (Based on Last Modified Dates):** The data clusters around two key periods:
    *   October 2025: compilation benchmarks.
    *   November 2025: gemma3 parameter tuning.
*   **Missing Metrics:**  Crucially, we *don’t* have direct performance numbers (e.g., latency, throughput)
    from the data itself. We only have the file names and timestamps.

**3. Performance Metrics Analysis**

| File Type | Count |
|-----------|-------|
| CSV       | 28    |

*   Throughput cannot be derived from file names alone.

**4. Recommendations for Optimization**

Given the data, here are recommendations, categorized by potential action:

*   **Data Extraction & Analysis:**
    *   **Parse JSON files:** Write a script to
        extract the metrics.
*   **Automated Reporting:**  Generate automated reports summarizing the key findings from the benchmarking runs.

Would you like me to delve deeper into any specific aspect of this analysis?
*   For example, the CSV files.
";

#[test]
fn seed_shaped_analysis_yields_summary_findings_and_recommendations() {
    let got = extract(SEED_ANALYSIS);
    assert_eq!(
        got.summary,
        "This benchmark dataset comprises 101 files, predominantly related to compilation and \
         benchmarking efforts for a ‘gemma3’ model, with a significant focus on iterative \
         quantization (IT-QAT) parameter tuning. The last modified dates indicate ongoing \
         testing and refinement."
    );
    assert_eq!(
        got.key_findings,
        [
            "**High Volume of Benchmarks:** The dataset represents a substantial number of benchmark runs, suggesting a rigorous testing process.",
            "**Convolutional Benchmarks Dominance:** The frequent use of \"conv_bench\" and \"conv_cuda_bench\" suggests that convolutional operations are a central performance area of concern.",
            "**Temporal Trends (Based on Last Modified Dates):** The data clusters around two key periods: October 2025: compilation benchmarks. November 2025: gemma3 parameter tuning.",
            "**Missing Metrics:** Crucially, we *don’t* have direct performance numbers (e.g., latency, throughput) from the data itself. We only have the file names and timestamps.",
        ]
    );
    assert_eq!(
        got.recommendations,
        [
            "**Data Extraction & Analysis:** **Parse JSON files:** Write a script to extract the metrics.",
            "**Automated Reporting:** Generate automated reports summarizing the key findings from the benchmarking runs.",
        ]
    );
}

/// The structure the analyze prompt asks for, with numbered items that wrap.
const REQUESTED_SHAPE: &str = "\
# Technical Analysis: Benchmark Inventory

## Executive Summary
The inventory holds 83 files (24 CSV, 30 JSON, 29 Markdown). Throughput
averages 108.84 tok/s across 287 samples.

## Key Findings
- `tokens_s` ranges from 0.00 to 303.90 tok/s; zero values suggest failed runs.
- TTFT has a long tail: mean 0.95 s,
  max 29.99 s.
* No `csv_data/` directory was found.

## Performance Metrics
- latency_ms: mean 540.03 over 10 samples.

## Recommendations
1. Re-run the benchmarks that report 0 tok/s and
   drop them from the averages.
2) Add `csv_data/` to the collection.

   Include its schema in the README.
3. Track TTFT p95, not only the mean.

Let me know if you want a deeper dive.
";

#[test]
fn atx_headings_with_wrapped_numbered_items() {
    let got = extract(REQUESTED_SHAPE);
    assert_eq!(
        got,
        Extracted {
            summary: "The inventory holds 83 files (24 CSV, 30 JSON, 29 Markdown). Throughput \
                      averages 108.84 tok/s across 287 samples."
                .into(),
            key_findings: vec![
                "`tokens_s` ranges from 0.00 to 303.90 tok/s; zero values suggest failed runs."
                    .into(),
                "TTFT has a long tail: mean 0.95 s, max 29.99 s.".into(),
                "No `csv_data/` directory was found.".into(),
            ],
            recommendations: vec![
                "Re-run the benchmarks that report 0 tok/s and drop them from the averages.".into(),
                "Add `csv_data/` to the collection. Include its schema in the README.".into(),
                "Track TTFT p95, not only the mean.".into(),
            ],
        }
    );
}

/// The seed's final report: numbered bold headings, then notes and questions
/// to the reader whose bullets are not recommendations.
const SEED_REPORT: &str = "\
**Technical Report: gemma3 Benchmarking - IT-QAT Parameter Tuning (October - November 2025)**

**1. Executive Summary**

This report summarizes the findings of a benchmarking dataset comprising 101 files.

**4. Key Findings**

*   **High Volume of Benchmarks:** The dataset represents a substantial number of benchmark runs, suggesting a rigorous testing process.
*   **Data Type Bias:**  A significant bias towards JSON and Markdown files suggests a strong reliance on structured data output and accompanying documentation.


**5. Recommendations**

Based on the analysis of this benchmarking dataset, the following recommendations are proposed:

1.  **Refine IT-QAT Parameter Search Space:** Further investigation into the optimal IT-QAT parameter ranges is warranted.
2.  **Automate Benchmarking Pipeline:** Develop an automated benchmarking pipeline to streamline the testing process and ensure consistent data collection.

**6. Appendix**

*   [Include a table summarizing the key metrics from the dataset (token counts, latency, etc.)]

---

**Notes and Next Steps:**

*   **Expand on the Data:**  This report is based solely on the provided data.

To help me further refine this report, could you tell me:

*   What hardware was used for the benchmarking?
";

#[test]
fn seed_report_stops_recommendations_at_the_next_heading() {
    let got = extract(SEED_REPORT);
    assert_eq!(
        got.summary,
        "This report summarizes the findings of a benchmarking dataset comprising 101 files."
    );
    assert_eq!(got.key_findings.len(), 2);
    assert!(got.key_findings[1].starts_with("**Data Type Bias:** A significant bias"));
    assert_eq!(
        got.recommendations,
        [
            "**Refine IT-QAT Parameter Search Space:** Further investigation into the optimal IT-QAT parameter ranges is warranted.",
            "**Automate Benchmarking Pipeline:** Develop an automated benchmarking pipeline to streamline the testing process and ensure consistent data collection.",
        ]
    );
}

#[test]
fn plain_and_inline_bold_labels_act_as_headings() {
    let text = "\
**Executive Summary:** Throughput is stable at 108 tok/s; TTFT is the bottleneck.

Key Findings:
- TTFT max is 29.99 s.
- 2 roots granted, 1 missing.

**Recommendations:**
- Investigate the 29.99 s TTFT outlier.
";
    let got = extract(text);
    assert_eq!(
        got.summary,
        "Throughput is stable at 108 tok/s; TTFT is the bottleneck."
    );
    assert_eq!(
        got.key_findings,
        ["TTFT max is 29.99 s.", "2 roots granted, 1 missing."]
    );
    assert_eq!(
        got.recommendations,
        ["Investigate the 29.99 s TTFT outlier."]
    );
}

#[test]
fn without_headings_the_summary_is_the_first_substantive_paragraph() {
    let text = "Sure! Here is my analysis.\n\nThe 83 files split into 24 CSV, 30 JSON and 29 \
                Markdown.\nMost metrics come from JSON.\n\n- one bullet\n";
    let got = extract(text);
    assert_eq!(
        got.summary,
        "The 83 files split into 24 CSV, 30 JSON and 29 Markdown. Most metrics come from JSON."
    );
    assert!(got.key_findings.is_empty());
    assert!(got.recommendations.is_empty());
}

#[test]
fn findings_written_as_labelled_paragraphs_become_items() {
    let text = "\
### Key Findings
**Throughput:** 108.84 tok/s mean across 287 samples.
**Latency:** 540.03 ms mean, driven by one file.

### Recommendations
Collect latency from more than one file before drawing conclusions.
";
    let got = extract(text);
    assert_eq!(
        got.key_findings,
        [
            "**Throughput:** 108.84 tok/s mean across 287 samples.",
            "**Latency:** 540.03 ms mean, driven by one file.",
        ]
    );
    assert_eq!(
        got.recommendations,
        ["Collect latency from more than one file before drawing conclusions."]
    );
}

#[test]
fn sub_headings_under_recommendations_are_collected() {
    let text = "\
## Recommendations
### Short-term recommendations
- Fix the zero tok/s rows.
### Long-term recommendations
- Automate the pipeline.
### Tooling
- Add a dashboard.
## Appendix
- Not a recommendation.
";
    assert_eq!(
        extract(text).recommendations,
        [
            "Fix the zero tok/s rows.",
            "Automate the pipeline.",
            "Add a dashboard.",
        ]
    );
}

#[test]
fn code_fences_tables_and_rules_are_not_items() {
    let text = "\
## Key Findings
```yaml
# not a heading
- not: an item
```
| a | b |
|---|---|
* * *
- A real finding.
***
- After a break: not under the heading any more.
";
    assert_eq!(extract(text).key_findings, ["A real finding."]);
}

#[test]
fn an_answer_wrapped_in_one_markdown_fence_is_unwrapped() {
    let text = "```markdown\n## Key Findings\n- Inside the fence.\n\n## Recommendations\n- Unwrap it.\n```\n";
    let got = extract(text);
    assert_eq!(got.key_findings, ["Inside the fence."]);
    assert_eq!(got.recommendations, ["Unwrap it."]);
}

#[test]
fn crlf_line_endings_and_dangling_bold_are_tolerated() {
    let text = "## Key Findings\r\n- Key Performance Findings**\r\n- Second\r\n  line\r\n";
    assert_eq!(
        extract(text).key_findings,
        ["Key Performance Findings", "Second line"]
    );
}

#[test]
fn numbered_headings_and_a_findings_label_in_prose() {
    let text = "\
1. Executive Summary
The data is thin.

2. **Key Findings**
- Only JSON carries TTFT.

3. Recommendations
- Add TTFT to the CSV exports.
- Keep the README current.
";
    let got = extract(text);
    assert_eq!(got.summary, "The data is thin.");
    assert_eq!(got.key_findings, ["Only JSON carries TTFT."]);
    assert_eq!(
        got.recommendations,
        ["Add TTFT to the CSV exports.", "Keep the README current."]
    );
}

#[test]
fn an_indented_line_mentioning_recommendations_continues_its_item() {
    let text = "\
## Recommendations
1. Automate the benchmarks. We
   recommend these steps:
2. Publish the results.
";
    assert_eq!(
        extract(text).recommendations,
        [
            "Automate the benchmarks. We recommend these steps:",
            "Publish the results."
        ]
    );
}

#[test]
fn empty_answer_extracts_nothing() {
    assert_eq!(extract(""), Extracted::default());
    assert_eq!(extract("\n\n   \n"), Extracted::default());
}

#[test]
fn chatter_is_recognised_by_whole_words() {
    assert!(is_chatter("Okay, here's the analysis:"));
    assert!(is_chatter("Would you like me to expand?"));
    assert!(!is_chatter("Greater throughput was observed on CUDA."));
    assert!(!is_chatter("Surely-measured TTFT is 0.95 s."));
    assert!(!is_chatter("Okayama datasets are absent."));
}

#[test]
fn titles_lose_markup_and_numbering() {
    assert_eq!(
        title_of("**2. Key Performance Findings**"),
        "Key Performance Findings"
    );
    assert_eq!(title_of(" 1.2 Key Findings:"), "Key Findings");
    assert_eq!(title_of("IV. Recommendations"), "Recommendations");
    assert_eq!(title_of("I think so"), "I think so");
    assert_eq!(title_of("`Executive`   Summary"), "Executive Summary");
}
